import { join } from 'node:path';
import { errorText, jsonLinesLogger } from './logger.ts';
import type { LogSink, RequestRecord } from './record.ts';
import { localPartition } from './schema.ts';

/**
 * Local log sink: newline-delimited JSON under `dir/dt=YYYY-MM-DD/hour=HH/requests.ndjson`, the
 * same partition layout the AWS export uses. Records are buffered and appended in batches so the
 * request path never waits on the disk. A record (final when a sink gets it) is serialised on the
 * next turn of the event loop, after the answer it belongs to has been written to the client; every
 * record that came in the same turn goes in one batch. A batch waits for its write as UTF-8 bytes
 * outside the JavaScript heap: lines kept as strings until the flush outlived the young
 * generation's collections under load (copied, then promoted, then marked: garbage collection
 * work for every record), where the bytes cost the collector nothing. A write that fails (a full
 * disk, a folder made unwritable) fails its own flush only: the next batch is written all the same.
 *
 * A flush comes `flushAfterMs` after the first record it holds, or once `flushAtBytes` are held if
 * that comes first. The kernel's copy into an ext4 page cache costs about 2 ns a byte here, in a
 * thread on the gateway's core when it has one core: at 64 connections 200 ms of records (2-3 MB)
 * took the core for milliseconds at once, every request then in flight waiting behind it
 * (docs/benchmarks.md, the file sink's flushes). One request at a time, the timer still flushes
 * first.
 */
export class FileLogSink implements LogSink {
  /** Per file, the batches waiting for the next flush (each batch's lines as UTF-8, newline-ended). */
  private buffer = new Map<string, Buffer[]>();
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();
  /** Records not serialised yet. */
  private pending: RequestRecord[] = [];

  constructor(
    readonly dir: string,
    private readonly flushAfterMs = 200,
    private readonly flushAtBytes = 256 * 1024,
  ) {}

  /** Bytes serialised since the last flush. */
  private held = 0;

  /** The last record's hour (`YYYY-MM-DDTHH`) and its file's batches: most records share them. */
  private hour = '';
  private chunks: Buffer[] = [];

  write(record: RequestRecord): void {
    if (this.pending.push(record) === 1) setImmediate(this.serialise);
  }

  private readonly serialise = (): void => {
    const records = this.pending;
    if (records.length === 0) return;
    this.pending = [];
    // Consecutive records of one hour become one chunk of bytes.
    let text = '';
    for (const record of records) {
      // `YYYY-MM-DDTHH`: the partition is the same as the last record's unless the hour changed.
      const hour = record.timestamp.slice(0, 13);
      if (hour !== this.hour) {
        if (text) this.hold(text);
        text = '';
        const { dt, hour: hh } = localPartition(record.timestamp);
        const file = join(this.dir, `dt=${dt}`, `hour=${hh}`, 'requests.ndjson');
        let chunks = this.buffer.get(file);
        if (!chunks) this.buffer.set(file, (chunks = []));
        this.hour = hour;
        this.chunks = chunks;
      }
      text += `${JSON.stringify(record)}\n`;
    }
    if (text) this.hold(text);
    if (this.held >= this.flushAtBytes) this.flushInBackground();
    else if (!this.timer) {
      this.timer = setTimeout(() => this.flushInBackground(), this.flushAfterMs);
      this.timer.unref();
    }
  };

  private hold(text: string): void {
    const bytes = Buffer.from(text);
    this.held += bytes.byteLength;
    this.chunks.push(bytes);
  }

  private flushInBackground(): void {
    this.flush().catch((err: unknown) => jsonLinesLogger.error('request log write failed', { dir: this.dir, error: errorText(err) }));
  }

  flush(): Promise<void> {
    this.serialise();
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.held = 0;
    const batch = this.buffer;
    this.buffer = new Map();
    this.hour = '';
    // After the writes before it, failed or not.
    this.writing = this.writing.catch(() => {}).then(async () => {
      // Loaded here, not at import: a Lambda (no file sink) never needs node:fs/promises.
      const { mkdir, open } = process.getBuiltinModule('node:fs/promises');
      for (const [file, chunks] of batch) {
        await mkdir(join(file, '..'), { recursive: true });
        // The batches go out as they are, in one gathered write (joining them first copied every
        // byte once more). Opened per flush, so a log folder removed or rotated meanwhile is made
        // again rather than written to unlinked.
        const handle = await open(file, 'a');
        try {
          await handle.writev(chunks);
        } finally {
          await handle.close();
        }
      }
    });
    return this.writing;
  }
}
