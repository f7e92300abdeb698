import Foundation

/// Turns received messages into prepared rows: validation, canonicalisation, tokens, and sealing of values the
/// vault does not hold yet. Plaintext exists only inside `prepare`.
///
/// Owned by the run's loop and used by it alone (not `Sendable`); what a batch being loaded meanwhile needs from it
/// is a ``Quarantiner``, a value of its own.
final class MessagePreparer {
    private let tokenizer: Tokenizer
    private let tombstoneHasher: TombstoneHasher
    private var sealer: DataKeySealer?
    private var dataKeyID = 0
    /// Tokens known to be in the vault (sealed by this run or found there), as fingerprints; bounded so memory stays
    /// flat.
    private var knownTokens = Set<TokenFingerprint>()
    private let knownTokensLimit: Int
    /// Batches to prepare before the vault is asked again about new tokens (0: ask for the next one). A run loading
    /// values the vault has never seen asks about every token of every batch and finds none: tens of thousands of
    /// primary-key probes a batch, beside the COPY on the same cores. So after a batch whose new tokens were all
    /// absent, the next `vaultProbeInterval - 1` batches seal their new values without asking. A value the vault held
    /// after all is refused by its primary key and the insert keeps the vault's copy (`ON CONFLICT DO NOTHING`, a
    /// slower path); the run then reports it (`vaultHeldValuesABatchSealed`), and the next batch asks again, as does
    /// every batch whose probe finds values there.
    private var batchesUntilVaultProbe = 0
    static let vaultProbeInterval = 8

    /// How many parts a large batch is prepared in at once: the cores the process may use.
    private let parallelism: Int

    init(tokenizer: Tokenizer, tombstoneHasher: TombstoneHasher, knownTokensLimit: Int = 262_144,
         parallelism: Int = ProcessInfo.processInfo.activeProcessorCount) {
        self.tokenizer = tokenizer
        self.tombstoneHasher = tombstoneHasher
        self.knownTokensLimit = knownTokensLimit
        // Its whole bound up front (about 8 MiB): a run's memory then stays the same whatever its length, instead of
        // growing by a rehash into twice the table as a long run learns its tokens.
        knownTokens.reserveCapacity(knownTokensLimit + 1)
        self.parallelism = max(1, parallelism)
    }

    /// True before the first data key, and when the data key has sealed its share and must be replaced before the
    /// next batch.
    var needsDataKey: Bool {
        guard let sealer else { return true }
        return sealer.isExhausted || sealer.sealedCount > DataKeySealer.valueLimit - 100_000
    }

    /// Seals with `sealer` from now on (after its sealed form was stored as `dataKeyID`).
    func use(_ sealer: DataKeySealer, dataKeyID: Int) {
        self.sealer = sealer
        self.dataKeyID = dataKeyID
    }

    /// Quarantines with the current data key, for a batch loaded while the next one is prepared.
    var quarantiner: Quarantiner {
        guard let sealer else { preconditionFailure("no data key: call use(_:dataKeyID:) first") }
        return Quarantiner(sealer: sealer, dataKeyID: dataKeyID)
    }

    /// A committed batch inserted fewer values than it sealed: the vault held some (or a refused message took them).
    /// The next batch asks the vault again.
    func vaultHeldValuesABatchSealed() {
        batchesUntilVaultProbe = 0
    }

    /// Marks tokens as present in the vault, after a batch committed.
    func remember(_ tokens: some Sequence<String>) {
        if knownTokens.count > knownTokensLimit { knownTokens.removeAll(keepingCapacity: true) }
        for token in tokens {
            if let fingerprint = TokenFingerprint(token) { knownTokens.insert(fingerprint) }
        }
    }

    /// Stops taking `tokens` as in the vault: a batch prepared to seal them committed without them.
    func forget(_ tokens: some Sequence<String>) {
        for token in tokens {
            if let fingerprint = TokenFingerprint(token) { knownTokens.remove(fingerprint) }
        }
    }

    /// Validates and tokenizes each message, then seals the values whose tokens are neither known to this run nor
    /// reported present by `vaultHolds` (a query of the vault for a list of tokens). Both steps run in parts, one
    /// per core, for batches large enough to be worth it; the result is the same, in the same order.
    func prepare(
        _ messages: [SourceMessage], tombstoned: ([String]) async throws -> Set<String> = { _ in [] },
        vaultHolds: ([String]) async throws -> Set<String>
    ) async throws -> [PreparedMessage] {
        let quarantiner = self.quarantiner
        let tokenizer = self.tokenizer, tombstoneHasher = self.tombstoneHasher
        // 1. Parse, validate, tokenize (or quarantine), each part on its own core.
        let parsedParts = try await Self.inParts(messages, parts: partCount(messages.count)) { part in
            var dates = SentDates()
            return try part.map { message in
                try Self.parse(message, tokenizer: tokenizer, tombstoneHasher: tombstoneHasher, quarantiner: quarantiner,
                               dates: &dates)
            }
        }
        // Forgotten users (their hash in vault.tombstones): their logins are suppressed, and nothing of them sealed.
        // Sets sized up front: growing them rehashes every 70-byte token again.
        var hashes = Set<DigestKey>(minimumCapacity: messages.count)
        for part in parsedParts {
            for parsed in part {
                if case .login(let login, _) = parsed.message.content { hashes.insert(DigestKey(login.subjectHash)) }
            }
        }
        let forgotten = hashes.isEmpty ? [] : try await tombstoned(hashes.map(\.text))
        var prepared: [PreparedMessage] = []
        prepared.reserveCapacity(messages.count)
        var pending: [Pending] = []
        for part in parsedParts {
            for var parsed in part {
                if !forgotten.isEmpty, case .login(let login, _) = parsed.message.content,
                   forgotten.contains(login.subjectHash) {
                    parsed.message.content = .suppressed
                    parsed.ip = nil
                    parsed.device = nil
                }
                if let ip = parsed.ip, let device = parsed.device {
                    pending.append(Pending(index: prepared.count, field: .ip, value: ip))
                    pending.append(Pending(index: prepared.count, field: .deviceID, value: device))
                }
                prepared.append(parsed.message)
            }
        }
        // 2. Ask the vault only about tokens this run has not seen; seal each remaining value once.
        // (Filter by lookup: `Set.subtracting` walks the whole of `knownTokens`, up to its limit, for every batch.)
        var unknown = Set<DigestKey>(minimumCapacity: pending.count)
        for item in pending {
            if let fingerprint = TokenFingerprint(item.value.token), knownTokens.contains(fingerprint) { continue }
            unknown.insert(DigestKey(item.value.token))
        }
        var present = Set<String>()
        if !unknown.isEmpty {
            if batchesUntilVaultProbe == 0 {
                present = try await vaultHolds(unknown.map(\.text))
                batchesUntilVaultProbe = present.isEmpty ? Self.vaultProbeInterval - 1 : 0
            } else {
                batchesUntilVaultProbe -= 1
            }
        }
        var toSeal: [Pending] = []
        for item in pending {
            // Removing the token from `unknown` both tests and marks it: each value is sealed once per batch.
            guard unknown.remove(DigestKey(item.value.token)) != nil, !present.contains(item.value.token) else { continue }
            toSeal.append(item)
        }
        // 3. Seal, each part on its own core; then attach each sealed value to its message.
        let sealer = quarantiner.sealer
        let sealedParts = try await Self.inParts(toSeal, parts: partCount(toSeal.count)) { part in
            try part.map { item in
                (item.index, PreparedSecret(token: item.value.token, field: item.field,
                                            sealed: try sealer.seal(item.value.canonical, token: item.value.token)))
            }
        }
        // A message's sealed values are adjacent (in `pending`'s order): each message is rewritten once.
        var current: (index: Int, secrets: [PreparedSecret])?
        func attachCurrent() {
            guard let current, case .login(let login, _) = prepared[current.index].content else { return }
            prepared[current.index].content = .login(login, secrets: current.secrets)
        }
        for part in sealedParts {
            for (index, secret) in part {
                if current?.index == index {
                    current?.secrets.append(secret)
                } else {
                    attachCurrent()
                    current = (index, [secret])
                }
            }
        }
        attachCurrent()
        remember(present)
        return prepared
    }

    /// A value waiting to be sealed: its message's place in the batch, its field, its canonical form and token.
    private struct Pending: Sendable {
        let index: Int
        let field: PIIField
        let value: TokenizedValue
    }

    /// One message parsed: its prepared form, and the two tokenized values of a login.
    private struct Parsed: Sendable {
        var message: PreparedMessage
        var ip: TokenizedValue?
        var device: TokenizedValue?
    }

    /// How many parts `count` items are worth splitting into: one per core, but small work is not split (a task
    /// costs more than a few hundred messages' preparation saves), and large work in parts of about 1,000 items (a
    /// few milliseconds each): a part holds its thread to the end, and the write session's next step, which the
    /// database waits for, needs one of the two.
    private func partCount(_ count: Int) -> Int {
        count >= 512 ? max(parallelism, count / 1024) : 1
    }

    /// `work` over `items` in `parts` contiguous parts, concurrently; the results in the parts' order.
    private static func inParts<Item: Sendable, Result: Sendable>(
        _ items: [Item], parts: Int, _ work: @escaping @Sendable (ArraySlice<Item>) throws -> [Result]
    ) async throws -> [[Result]] {
        guard parts > 1, items.count > 1 else { return [try work(items[...])] }
        let size = (items.count + parts - 1) / parts
        return try await withThrowingTaskGroup(of: (Int, [Result]).self) { group in
            for (number, start) in stride(from: 0, to: items.count, by: size).enumerated() {
                let slice = items[start..<min(start + size, items.count)]
                group.addTask { (number, try work(slice)) }
            }
            var results = [[Result]](repeating: [], count: (items.count + size - 1) / size)
            for try await (number, result) in group { results[number] = result }
            return results
        }
    }

    private static func parse(
        _ message: SourceMessage, tokenizer: Tokenizer, tombstoneHasher: TombstoneHasher, quarantiner: Quarantiner,
        dates: inout SentDates
    ) throws -> Parsed {
        do {
            let event = try LoginEvent.parse(body: message.body)
            let ip: TokenizedValue
            let device: TokenizedValue
            do { ip = try tokenizer.tokenize(event.ip, as: .ip) } catch {
                throw MessageRejection("field ip: not a valid IPv4 or IPv6 address")
            }
            do { device = try tokenizer.tokenize(event.deviceID, as: .deviceID) } catch {
                throw MessageRejection("field device_id: empty after trimming whitespace")
            }
            let login = PreparedLogin(
                messageID: message.messageID, userID: event.userID, deviceType: event.deviceType,
                ipToken: ip.token, deviceToken: device.token, locale: event.locale,
                appVersion: event.appVersion, appVersionText: event.appVersionText,
                createDate: event.createDate ?? dates.text(for: message.sentAt ?? Date()),
                subjectHash: tombstoneHasher.hash(userID: event.userID))
            return Parsed(message: PreparedMessage(source: message, content: .login(login, secrets: [])),
                          ip: ip, device: device)
        } catch let rejection as MessageRejection {
            return Parsed(message: try quarantiner.quarantine(message, reason: rejection.reason))
        }
    }

    /// The last send date formatted, and its UTC day: messages of a run share a few days, and formatting a date
    /// per message cost more than the rest of its preparation.
    private struct SentDates {
        private var last: (day: Double, text: String)?

        mutating func text(for date: Date) -> String {
            let day = (date.timeIntervalSince1970 / 86_400).rounded(.down)
            if let last, last.day == day { return last.text }
            let text = MessagePreparer.utcDate(date)
            last = (day, text)
            return text
        }
    }

    static func utcDate(_ date: Date) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let parts = calendar.dateComponents([.year, .month, .day], from: date)
        return String(format: "%04d-%02d-%02d", parts.year!, parts.month!, parts.day!)
    }
}

/// Seals messages into quarantine entries with one data key. A value (the sealer guards its own count with a lock),
/// so the batch being loaded can quarantine a message the database refused while the next batch is prepared.
struct Quarantiner: Sendable {
    let sealer: DataKeySealer
    /// The `vault.data_keys` id of the sealer's data key.
    let dataKeyID: Int

    /// A quarantine entry for a message, its whole body sealed with the message id as additional data.
    func quarantine(_ message: SourceMessage, reason: String) throws -> PreparedMessage {
        let sealed = try sealer.sealQuarantined(body: message.body, messageID: message.messageID)
        return PreparedMessage(
            source: message,
            content: .quarantine(PreparedQuarantine(messageID: message.messageID, reason: reason, sealedBody: sealed)))
    }
}
