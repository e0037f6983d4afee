declare module 'modesl' {
  export const Connection: new (...args: unknown[]) => unknown;
}
