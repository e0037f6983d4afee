/**
 * The far ends' media in the lab, on the fabric's service net: `node --import tsx test/e2e/rtp-echo-main.ts IP PORT`.
 * Every RTP packet goes back to its sender (sipp -rtp_echo does the same); on SIGUSR1 it prints one JSON line
 * {"ev":"audio","calls":{uuid:{first,last,packets,gaps,from}}} with what arrived per call (test/sim/rtp-echo.ts).
 */
import { RtpEcho } from '../sim/rtp-echo';

const echo = new RtpEcho(process.argv[2], Number(process.argv[3]));
echo.start().then(
  () => {
    process.stdout.write(`rtp echo listening on ${process.argv[2]}:${process.argv[3]}\n`);
    process.on('SIGUSR1', () =>
      process.stdout.write(
        JSON.stringify({ ev: 'audio', at: Date.now(), calls: Object.fromEntries(echo.calls) }) + '\n',
      ),
    );
    process.on('SIGTERM', () => {
      echo.stop();
      process.exit(0);
    });
  },
  (e) => {
    process.stderr.write(`rtp echo: ${(e as Error).message}\n`);
    process.exit(2);
  },
);
