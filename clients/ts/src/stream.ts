// RequestStream: the request side of a client or bidirectional stream
// (Attach, PublishState), written to as the program goes.

/**
 * RequestStream is an AsyncIterable of requests that a program writes to:
 * pass it to a streaming call, then write() each request and close() when
 * done. The call reads it once. write() resolves when the call has taken
 * the request; after close() or abort(), write() rejects.
 *
 *   const requests = new RequestStream<PublishStateRequest>();
 *   const acks = hub.publishState(requests)[Symbol.asyncIterator]();
 *   await requests.write(create(PublishStateRequestSchema, {gateway, deviceId, data}));
 *   await acks.next(); // acknowledged
 *   requests.close();
 */
export class RequestStream<T> implements AsyncIterable<T> {
  private queue: {value: T; taken: () => void}[] = [];
  private waiting?: () => void;
  private ended = false;
  private iterated = false;

  /** Queue a request; resolves once the call has read it. */
  write(value: T): Promise<void> {
    if (this.ended) return Promise.reject(new Error("RequestStream: write after close"));
    return new Promise((taken) => {
      this.queue.push({value, taken});
      this.wake();
    });
  }

  /** End the stream once the queued requests are read (a half-close). */
  close(): void {
    this.ended = true;
    this.wake();
  }

  private wake(): void {
    const w = this.waiting;
    this.waiting = undefined;
    w?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    if (this.iterated) throw new Error("RequestStream: read twice (a stream serves one call)");
    this.iterated = true;
    for (;;) {
      const next = this.queue.shift();
      if (next) {
        next.taken();
        yield next.value;
        continue;
      }
      if (this.ended) return;
      await new Promise<void>((resolve) => (this.waiting = resolve));
    }
  }
}
