/// What a run's loop (``ETLRun``) and its loader (``BatchLoader``) need of the run's write session: the run history,
/// data keys, and one transaction per batch. ``ETLStore`` is the one implementation; the unit tests drive the batch
/// logic over a fake of it, without a database.
protocol ETLWriteSession: Sendable {
    /// Marks runs of dead processes `abandoned`, records a new run and holds its lock; returns the run's id.
    func beginRun(source: String, keys: RunKeys) async throws -> Int
    /// False when the vault's erasure count was not being kept at the run's start (a trigger of it switched off or
    /// missing), as `beginRun` found: every batch then checks its look-ups again under the lock.
    var erasureCountIsKept: Bool { get async }
    /// Refuses a token key whose version the vault knows under another key id (and records a new version's key).
    func checkTokenKey(version: Int, keyID: String) async throws
    /// The vault key id of the latest run that sealed to a recorded key, if any.
    func lastVaultKeyID() async throws -> String?
    /// Records the end of run `id`; never throws (the next run marks a run left `running` as abandoned).
    func finishRun(_ id: Int, summary: ETLSummary) async
    /// Merges the partitions of user_logins of finished runs from before this month into one
    /// (`public.merge_run_partitions`); returns how many it merged: 0 when there were none, -1 when it gave up (a lock
    /// was not free).
    func mergeFinishedRunPartitions() async throws -> Int
    /// Stores a sealed data key; returns its `vault.data_keys` id.
    func storeDataKey(_ key: SealedDataKey) async throws -> Int
    /// Inserts one encoded batch in one transaction, all or nothing.
    func insert(_ batch: EncodedBatch, dataKeyID: Int) async throws -> LoadOutcome
    /// Records the subject hash (`hash` of the user id) of rows loaded without one, round by round while `keepGoing`;
    /// returns the rows updated and whether none is left.
    func recordMissingSubjectHashes(_ hash: @Sendable (String) -> String, while keepGoing: @Sendable () -> Bool)
        async throws -> (recorded: Int, finished: Bool)
}

extension ETLWriteSession {
    /// The unit tests' fakes hold no partitions.
    func mergeFinishedRunPartitions() async throws -> Int { 0 }

    /// The unit tests' fakes hold no rows from before subject hashes.
    func recordMissingSubjectHashes(_ hash: @Sendable (String) -> String, while keepGoing: @Sendable () -> Bool)
        async throws -> (recorded: Int, finished: Bool) { (0, true) }
}

/// What a run needs of its read session: which users are forgotten and which values the vault holds, as committed.
/// ``VaultLookup`` is the one implementation; the unit tests use a fake.
protocol ETLReadSession: Sendable {
    /// Which of `hashes` (keyed user-id hashes) name forgotten users.
    func tombstoned(_ hashes: [String]) async throws -> Set<String>
    /// Which of `tokens` the vault already holds.
    func vaultHolds(_ tokens: [String]) async throws -> Set<String>
}

extension ETLStore: ETLWriteSession {}
extension VaultLookup: ETLReadSession {}
