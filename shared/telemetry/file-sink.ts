import { join } from 'node:path';
import type { LogSink, RequestRecord } from './record.ts';
import { localPartition } from './schema.ts';

/**
 * Local log sink: newline-delimited JSON under `dir/dt=YYYY-MM-DD/hour=HH/requests.ndjson`, the
 * same partition layout the AWS export uses. Records are buffered and appended in batches so the
 * request path never waits on the disk. A record (final when a sink gets it) is serialised on the
 * next turn of the event loop, after the answer it belongs to has been written to the client; every
 * record that came in the same turn goes in one batch.
 */
export class FileLogSink implements LogSink {
  private buffer = new Map<string, string[]>();
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();
  /** Records not serialised yet. */
  private pending: RequestRecord[] = [];

  constructor(
    readonly dir: string,
    private readonly flushAfterMs = 200,
  ) {}

  /** The last record's hour (`YYYY-MM-DDTHH`) and its file's buffered lines: most records share them. */
  private hour = '';
  private lines: string[] = [];

  write(record: RequestRecord): void {
    if (this.pending.push(record) === 1) setImmediate(this.serialise);
  }

  private readonly serialise = (): void => {
    const records = this.pending;
    if (records.length === 0) return;
    this.pending = [];
    for (const record of records) this.append(record);
  };

  private append(record: RequestRecord): void {
    // `YYYY-MM-DDTHH`: the partition is the same as the last record's unless the hour changed.
    const hour = record.timestamp.slice(0, 13);
    if (hour !== this.hour) {
      const { dt, hour: hh } = localPartition(record.timestamp);
      const file = join(this.dir, `dt=${dt}`, `hour=${hh}`, 'requests.ndjson');
      let lines = this.buffer.get(file);
      if (!lines) this.buffer.set(file, (lines = []));
      this.hour = hour;
      this.lines = lines;
    }
    this.lines.push(JSON.stringify(record));
    if (!this.timer) {
      this.timer = setTimeout(() => void this.flush(), this.flushAfterMs);
      this.timer.unref();
    }
  }

  flush(): Promise<void> {
    this.serialise();
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const batch = this.buffer;
    this.buffer = new Map();
    this.hour = '';
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
