/** keepalived's VRRP states as its notify hooks and notify FIFO name them. */
export type VrrpState = 'MASTER' | 'BACKUP' | 'FAULT' | 'STOP' | 'DELETED';
export const STATES: readonly VrrpState[] = ['MASTER', 'BACKUP', 'FAULT', 'STOP', 'DELETED'];
