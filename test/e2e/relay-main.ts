/** The fabric side of relay.ts as a process: `node --import tsx test/e2e/relay-main.ts SOCKET_PATH`. */
import { relay } from './relay';

relay(process.argv[2]);
