import Foundation

/// How a command prints rows (`--format`); rendered by `RenderedOutput.render`.
public enum OutputFormat: String, Sendable, CaseIterable {
    /// Aligned columns for a terminal; control characters are shown escaped so that stored text cannot drive the
    /// terminal.
    case table
    /// A JSON array of objects (or one object), keys as the database's column names.
    case json
    /// RFC 4180 CSV with a header row. Values are written exactly as they are (no spreadsheet-formula guard: a
    /// compliance export must keep the original bytes); open it as text, not in a spreadsheet that evaluates cells.
    case csv
}

/// Rows of text cells under a header: the table and CSV forms of a `Renderable`.
public struct TextRows: Sendable, Equatable {
    public var header: [String]
    public var rows: [[String]]

    public init(header: [String], rows: [[String]]) {
        self.header = header
        self.rows = rows
    }

    /// Each row as a JSON object keyed by the header (every value a string).
    var jsonObjects: [[String: Any]] { rows.map { Dictionary(uniqueKeysWithValues: zip(header, $0)) } }
}

/// What a command prints in `--format table|json|csv`: the one protocol every command's rows render through
/// (`RenderedOutput.render`). A type gives its rows once; the table, CSV and JSON forms, the escaping of terminal
/// controls and the formula guard of `--safe-csv` are the renderer's, not the type's.
public protocol Renderable {
    /// The table form's header and cells (escaped and aligned by the renderer).
    var tableRows: TextRows { get }
    /// The CSV form's header and cells; by default the table's.
    var csvRows: TextRows { get }
    /// The JSON form: an array of objects, or one object (`NSNull` for null); by default the CSV rows as objects
    /// of strings.
    var jsonValue: Any { get }
    /// The table form as text, ending with a newline; by default `tableRows` aligned, for a type whose table is
    /// prose or has a tail (the caller of `escapingControlCharacters` for any text it adds).
    var tableText: String { get }
}

extension Renderable {
    public var csvRows: TextRows { tableRows }
    public var jsonValue: Any { csvRows.jsonObjects }
    public var tableText: String { TextOutput.table(header: tableRows.header, rows: tableRows.rows) }
}

/// The one rendering path: every command's table, JSON and CSV output, and the JSON lines of `audit log`, reach
/// standard output through here.
public enum RenderedOutput {
    /// `value` in `format`, ending with a newline. `guardingFormulas` is `--safe-csv` (CSV only: a cell a
    /// spreadsheet would evaluate is prefixed with `'` and quoted); `forTerminal` escapes control and format
    /// characters other than line ends (escape sequences, bidi overrides) as `\u{..}`, so stored text cannot drive
    /// or reorder a terminal.
    public static func render(_ value: some Renderable, as format: OutputFormat, guardingFormulas: Bool = false,
                              forTerminal: Bool = false) -> String {
        let text: String
        switch format {
        case .table: text = value.tableText
        case .csv: text = TextOutput.csv(header: value.csvRows.header, rows: value.csvRows.rows, guardFormulas: guardingFormulas)
        case .json: text = TextOutput.json(value.jsonValue)
        }
        return forTerminal ? terminalSafe(text) : text
    }

    /// Text already rendered (JSON lines, a command's summary lines) made safe for a terminal when `forTerminal`:
    /// control and format characters other than line ends written as `\u{..}`. Unchanged for a file or a pipe.
    public static func terminalSafe(_ text: String, forTerminal: Bool = true) -> String {
        guard forTerminal else { return text }
        var out = ""
        for scalar in text.unicodeScalars {
            let category = scalar.properties.generalCategory
            if scalar != "\n" && scalar != "\r" && (category == .control || category == .format) {
                out += "\\u{\(String(scalar.value, radix: 16))}"
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }
}

extension OutputFormat {
    /// `value` in this format (for a file or a pipe, no formula guard): `RenderedOutput.render`.
    public func render(_ value: some Renderable) -> String { RenderedOutput.render(value, as: self) }
}

/// The renderers behind `OutputFormat`, for rows of text cells.
enum TextOutput {
    /// Aligned columns separated by two spaces, a header line first; ends with a newline.
    static func table(header: [String], rows: [[String]]) -> String {
        let rows = rows.map { $0.map(escapingControlCharacters) }
        var widths = header.map(\.count)
        for row in rows { for (index, cell) in row.enumerated() { widths[index] = max(widths[index], cell.count) } }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { index, cell in
                index == cells.count - 1 ? cell : cell + String(repeating: " ", count: max(0, widths[index] - cell.count))
            }.joined(separator: "  ")
        }
        var out = line(header) + "\n"
        for row in rows { out += line(row) + "\n" }
        return out
    }

    /// RFC 4180: a header row, CRLF line ends, fields quoted when they hold a comma, quote or line break. With
    /// `guardFormulas` (`--safe-csv`), a cell that a spreadsheet would evaluate (starting with `=`, `+`, `-`, `@`, a
    /// tab or a carriage return) is prefixed with `'` and quoted, as OWASP recommends; off by default, since a
    /// compliance export keeps the original bytes.
    static func csv(header: [String], rows: [[String]], guardFormulas: Bool = false) -> String {
        func quoted(_ field: String) -> String {
            var field = field
            if guardFormulas, let first = field.unicodeScalars.first, "=+-@\t\r".unicodeScalars.contains(first) {
                field = "'" + field
                return "\"" + field.replacingOccurrences(of: "\"", with: "\"\"") + "\""
            }
            // By scalar: "\r\n" is one Character, equal to neither "\r" nor "\n" (found by the escaping fuzzer).
            guard field.unicodeScalars.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" })
            else { return field }
            return "\"" + field.replacingOccurrences(of: "\"", with: "\"\"") + "\""
        }
        var out = header.map(quoted).joined(separator: ",") + "\r\n"
        for row in rows { out += row.map(quoted).joined(separator: ",") + "\r\n" }
        return out
    }

    /// Pretty-printed JSON with sorted keys, ending with a newline. Control and format characters inside strings
    /// (C1 controls, bidi overrides such as U+202E, which the JSON encoder leaves as they are) are written as `\uXXXX`
    /// escapes: the same strings to any JSON reader, but nothing that can drive or reorder a terminal.
    static func json(_ object: Any) -> String {
        let data = (try? JSONSerialization.data(
            withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])) ?? Data("null".utf8)
        return escapingFormatCharactersInJSON(String(decoding: data, as: UTF8.self)) + "\n"
    }

    /// Encoded JSON with every control and format character other than a newline written as `\uXXXX`.
    static func escapingFormatCharactersInJSON(_ json: String) -> String {
        var out = ""
        for scalar in json.unicodeScalars {
            // Outside strings the encoder writes only newlines and spaces; inside them it escapes C0 itself.
            let category = scalar.properties.generalCategory
            if scalar != "\n" && (category == .control || category == .format) {
                for unit in String(scalar).utf16 { out += "\\u" + hex4(unit) }
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    private static func hex4(_ unit: UInt16) -> String {
        let hex = String(unit, radix: 16)
        return String(repeating: "0", count: 4 - hex.count) + hex
    }

    /// `text` with control and format characters (newlines, escape sequences, bidi overrides) written as `\u{..}`.
    static func escapingControlCharacters(_ text: String) -> String {
        var out = ""
        for scalar in text.unicodeScalars {
            if scalar.properties.generalCategory == .control || scalar.properties.generalCategory == .format {
                out += "\\u{\(String(scalar.value, radix: 16))}"
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }
}
