import Foundation

/// Turns received messages into prepared rows: validation, canonicalisation, tokens, and sealing of values the
/// vault does not hold yet. Plaintext exists only inside `prepare`.
///
/// Owned by the run's loop and used by it alone (not `Sendable`); what a batch being loaded meanwhile needs from it
/// is a ``Quarantiner``, a value of its own.
final class MessagePreparer {
    private let tokenizer: Tokenizer
    private var sealer: DataKeySealer?
    private var dataKeyID = 0
    /// Tokens known to be in the vault (sealed by this run or found there); bounded so memory stays flat.
    private var knownTokens = Set<String>()
    private let knownTokensLimit: Int

    init(tokenizer: Tokenizer, knownTokensLimit: Int = 262_144) {
        self.tokenizer = tokenizer
        self.knownTokensLimit = knownTokensLimit
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

    /// Marks tokens as present in the vault, after a batch committed.
    func remember(_ tokens: some Sequence<String>) {
        if knownTokens.count > knownTokensLimit { knownTokens.removeAll(keepingCapacity: true) }
        knownTokens.formUnion(tokens)
    }

    /// Validates and tokenizes each message, then seals the values whose tokens are neither known to this run nor
    /// reported present by `vaultHolds` (a query of the vault for a list of tokens).
    func prepare(
        _ messages: [SourceMessage], vaultHolds: ([String]) async throws -> Set<String>
    ) async throws -> [PreparedMessage] {
        let quarantiner = self.quarantiner
        let sealer = quarantiner.sealer
        struct Pending {
            let index: Int
            let field: PIIField
            let value: TokenizedValue
        }
        var prepared: [PreparedMessage] = []
        prepared.reserveCapacity(messages.count)
        var pending: [Pending] = []
        for message in messages {
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
                    createDate: event.createDate ?? sentDate(message.sentAt ?? Date()))
                pending.append(Pending(index: prepared.count, field: .ip, value: ip))
                pending.append(Pending(index: prepared.count, field: .deviceID, value: device))
                prepared.append(PreparedMessage(source: message, content: .login(login, secrets: [])))
            } catch let rejection as MessageRejection {
                prepared.append(try quarantiner.quarantine(message, reason: rejection.reason))
            }
        }
        // Ask the vault only about tokens this run has not seen; seal each remaining value once.
        // (Filter by lookup: `Set.subtracting` walks the whole of `knownTokens`, up to its limit, for every batch.)
        var unknown = Set<String>()
        for item in pending where !knownTokens.contains(item.value.token) { unknown.insert(item.value.token) }
        let present = unknown.isEmpty ? [] : try await vaultHolds(Array(unknown))
        for item in pending {
            let token = item.value.token
            // Removing the token from `unknown` both tests and marks it: each value is sealed once per batch.
            guard unknown.remove(token) != nil, !present.contains(token) else { continue }
            let sealed = try sealer.seal(item.value.canonical, token: token)
            guard case .login(let login, var secrets) = prepared[item.index].content else { continue }
            secrets.append(PreparedSecret(token: token, field: item.field, sealed: sealed))
            prepared[item.index].content = .login(login, secrets: secrets)
        }
        remember(present)
        return prepared
    }

    /// The last send date formatted, and its UTC day: messages of a run share a few days, and formatting a date
    /// per message cost more than the rest of its preparation.
    private var lastSentDay: (day: Double, text: String)?

    private func sentDate(_ date: Date) -> String {
        let day = (date.timeIntervalSince1970 / 86_400).rounded(.down)
        if let lastSentDay, lastSentDay.day == day { return lastSentDay.text }
        let text = Self.utcDate(date)
        lastSentDay = (day, text)
        return text
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
