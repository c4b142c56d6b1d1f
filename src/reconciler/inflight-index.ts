/**
 * The in-flight rows of one kind in memory, by the Astria object they wait on: what a round settles
 * with what Astria shows, without asking the database for each page's rows. The daemon refreshes it
 * with every re-read of the in-flight rows (every few seconds), `--once` fills it from its own read;
 * the writes of a round keep it current, and another writer's change (a compare-and-set lost) takes
 * the row out until the next re-read brings it back as it is then.
 */
export interface IndexedRow<Row> {
  row: Row;
  /** The Astria object's id. */
  remoteId: number;
  /** The Astria object the remote one lives under (a prompt's tune), when known. */
  parentRemoteId: string | null;
}

export class InFlightIndex<Row extends { id: string }> {
  private readonly byId = new Map<string, IndexedRow<Row>>();
  // Nearly every Astria object has one row: an array of one costs a fraction of a Set, held per row.
  private readonly byRemote = new Map<number, string[]>();

  get size(): number {
    return this.byId.size;
  }

  /** Every row now in flight, replacing what was held. */
  replace(rows: Iterable<IndexedRow<Row>>): void {
    this.byId.clear();
    this.byRemote.clear();
    for (const entry of rows) this.add(entry);
  }

  add(entry: IndexedRow<Row>): void {
    this.delete(entry.row.id);
    this.byId.set(entry.row.id, entry);
    const rows = this.byRemote.get(entry.remoteId);
    if (rows) rows.push(entry.row.id);
    else this.byRemote.set(entry.remoteId, [entry.row.id]);
  }

  /** The rows waiting on one Astria object. */
  rowsOf(remoteId: number): Row[] {
    return (this.byRemote.get(remoteId) ?? []).map((id) => this.byId.get(id)!.row);
  }

  /** The parent of one Astria object, as its rows know it (null when none does). */
  parentOf(remoteId: number): string | null {
    for (const id of this.byRemote.get(remoteId) ?? []) {
      const parent = this.byId.get(id)!.parentRemoteId;
      if (parent !== null) return parent;
    }
    return null;
  }

  remoteIds(): number[] {
    return [...this.byRemote.keys()];
  }

  /** The row as our own write left it (same id, same Astria object). */
  update(row: Row): void {
    const entry = this.byId.get(row.id);
    if (entry) entry.row = row;
  }

  delete(rowId: string): void {
    const entry = this.byId.get(rowId);
    if (!entry) return;
    this.byId.delete(rowId);
    const rows = this.byRemote.get(entry.remoteId)!;
    if (rows.length === 1) this.byRemote.delete(entry.remoteId);
    else rows.splice(rows.indexOf(rowId), 1);
  }
}
