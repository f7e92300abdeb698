import ArgumentParser
import Foundation
import PIIVault

struct Lookup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lookup",
        abstract: "Find the logins a data subject's ip addresses or device ids appear in (compliance; logged first).",
        discussion: """
            Run as a login in role piivault_compliance, with the token key. Each value is canonicalised as the ETL \
            does and tokenized under every token key given (repeat --token-key, one per version, while a rotation is \
            not yet retokenized; a version present without its key is named in a warning); only the tokens reach the database \
            and the access log (action lookup, subject the tokens); the rows are printed only once the entry is \
            committed. Values are never printed: each row names the value by its position (1, 2, ...).

            Exit status: 0 found; 1 nothing found, or over --max-rows; 64 usage (no --reason, no value, an invalid \
            ip or device id, not echoed); 65 token key malformed; 69 database unavailable; 75 the action's dual-control policy asks for approvals: a request was recorded, nothing done (run \
            again with --request N once approved); 77 token key mode/owner, \
            or a login outside piivault_compliance (the attempt is logged).
            """)

    @OptionGroup var database: DatabaseOptions

    @OptionGroup var approval: ApprovalRequestOptions

    @OptionGroup var tokenKeys: TokenKeysOptions

    @Option(help: ArgumentHelp("Why this access is needed (case or request number); logged.", valueName: "TEXT"))
    var reason: String?

    @Option(name: .customLong("ip"), parsing: .upToNextOption, help: ArgumentHelp("IP addresses to look up.", valueName: "VALUE"))
    var ips: [String] = []

    @Option(name: .customLong("device-id"), parsing: .upToNextOption,
            help: ArgumentHelp("Device ids to look up.", valueName: "VALUE"))
    var deviceIDs: [String] = []

    @Option(help: ArgumentHelp("Read values from FILE (- for standard input), one per line as ip:VALUE or device_id:VALUE.",
                               valueName: "FILE"))
    var valuesFile: String?

    @Option(help: "Output format.")
    var format: OutputFormat = .table

    @OptionGroup var csv: CSVSafetyOptions

    @Option(help: "Refuse (and log the refusal) when more rows than this would be returned.")
    var maxRows: Int = 100

    func validate() throws {
        guard let reason, !reason.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            throw ValidationError("--reason is required: say why this access is needed (case or request number); it is logged")
        }
        guard !ips.isEmpty || !deviceIDs.isEmpty || valuesFile != nil else {
            throw ValidationError("give --ip, --device-id or --values-file")
        }
        guard maxRows >= 1 else { throw ValidationError("--max-rows must be 1 or more") }
    }

    func run() async throws {
        try await reportingErrors {
            let keys = try await tokenKeys.load(
                missing: "--token-key is required (or PIIVAULT_TOKEN_KEY): lookup tokenizes the values with it")
            let values = ips.map { (field: PIIField.ip, value: $0) } + deviceIDs.map { (field: PIIField.deviceID, value: $0) }
                + (try readValuesFile())
            var service = LookupService(databaseURL: database.resolved, tokenKeys: keys, caller: approval.caller)
            service.warn = { FileHandle.standardError.write(Data("piivault: warning: \($0)\n".utf8)) }
            let report = try await service.run(LookupRequest(values: values, reason: reason ?? "", maxRows: maxRows))
            csv.print(report, as: format)
            flushBeforeNote()
            FileHandle.standardError.write(Data("piivault: access logged as entry \(report.logSeq)\n".utf8))
        }
    }

    /// `ip:VALUE` / `device_id:VALUE` lines; blank lines ignored. A bad line is named by number, never shown.
    private func readValuesFile() throws -> [(field: PIIField, value: String)] {
        guard let valuesFile else { return [] }
        let data: Data
        if valuesFile == "-" {
            data = FileHandle.standardInput.readDataToEndOfFile()
        } else {
            guard let contents = FileManager.default.contents(atPath: valuesFile) else {
                throw ValidationError("cannot read --values-file \(valuesFile); check the path")
            }
            data = contents
        }
        var values: [(field: PIIField, value: String)] = []
        for (number, line) in String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let text = line.trimmingCharacters(in: .whitespacesAndNewlines)
            if text.isEmpty { continue }
            guard let colon = text.firstIndex(of: ":"),
                  let field = PIIField(rawValue: String(text[..<colon])) else {
                throw ValidationError("--values-file line \(number + 1) is not ip:VALUE or device_id:VALUE; not shown")
            }
            values.append((field, String(text[text.index(after: colon)...])))
        }
        return values
    }
}
