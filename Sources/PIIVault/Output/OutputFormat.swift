import Foundation

/// How a command prints rows: `audit log` and `unmask` share it.
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

/// Options of the CSV renderer, set for the duration of one rendering (a task-local value, so that every renderer of
/// every command honours it without passing it through each signature).
public enum CSVOptions {
    /// `--safe-csv`: a cell that a spreadsheet would evaluate (starting with `=`, `+`, `-`, `@`, a tab or a carriage
    /// return) is prefixed with `'` and quoted, as OWASP recommends. Off by default: a compliance export keeps the
    /// original bytes.
    @TaskLocal public static var guardFormulas = false
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

    /// RFC 4180: a header row, CRLF line ends, fields quoted when they hold a comma, quote or line break.
    static func csv(header: [String], rows: [[String]]) -> String {
        let guardFormulas = CSVOptions.guardFormulas
        func quoted(_ field: String) -> String {
            var field = field
            if guardFormulas, let first = field.unicodeScalars.first, "=+-@\t\r".unicodeScalars.contains(first) {
                field = "'" + field
                return "\"" + field.replacingOccurrences(of: "\"", with: "\"\"") + "\""
            }
            guard field.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return field }
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
