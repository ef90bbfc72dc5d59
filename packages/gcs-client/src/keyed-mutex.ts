// One operation at a time per key: the bridge runs requests concurrently, and two operations on
// one disk (a host file in UtilityVM, a SCSI LUN or a union's mount point in a guest) must not
// interleave their steps. Shared by the utility-VM handle and by guests (apps/guest).

export class KeyedMutex {
  readonly #tails = new Map<string, Promise<unknown>>();

  /** Runs `fn` after every earlier `run` for `key` has settled; resolves or rejects with `fn`'s outcome. */
  run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#tails.get(key) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => {});
    this.#tails.set(key, tail);
    void tail.then(() => {
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    });
    return next;
  }
}
