import { join } from 'node:path';
import type { LogSink, RequestRecord } from './record.ts';
import { localPartition } from './schema.ts';

/**
 * Local log sink: newline-delimited JSON under `dir/dt=YYYY-MM-DD/hour=HH/requests.ndjson`, the
 * same partition layout the AWS export uses. Records are buffered and appended in batches so the
 * request path never waits on the disk.
 */
export class FileLogSink implements LogSink {
  private buffer = new Map<string, string[]>();
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();

  constructor(
    readonly dir: string,
    private readonly flushAfterMs = 200,
  ) {}

  write(record: RequestRecord): void {
    const { dt, hour } = localPartition(record.timestamp);
    const file = join(this.dir, `dt=${dt}`, `hour=${hour}`, 'requests.ndjson');
    let lines = this.buffer.get(file);
    if (!lines) this.buffer.set(file, (lines = []));
    lines.push(JSON.stringify(record));
    if (!this.timer) {
      this.timer = setTimeout(() => void this.flush(), this.flushAfterMs);
      this.timer.unref();
    }
  }

  flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const batch = this.buffer;
    this.buffer = new Map();
    this.writing = this.writing.then(async () => {
      // Loaded here, not at import: a Lambda (no file sink) never needs node:fs/promises.
      const { appendFile, mkdir } = process.getBuiltinModule('node:fs/promises');
      for (const [file, lines] of batch) {
        await mkdir(join(file, '..'), { recursive: true });
        await appendFile(file, `${lines.join('\n')}\n`);
      }
    });
    return this.writing;
  }
}
