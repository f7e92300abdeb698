import Foundation
import FuzzSupport
import PIIVault

/// The one rendering path for stored text (`RenderedOutput`): table, CSV (with and without `--safe-csv`) and JSON,
/// for a file and for a terminal. The input is cells (tab-separated, one row a line) under a fixed header.
/// Invariants: nothing rendered for a terminal holds a control or format character other than a line end; the
/// table never does; CSV reads back (RFC 4180) to exactly the cells; JSON reads back to exactly the cells.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let options = input.byte()
    let header = ["subject", "value", "note"]
    let rows = input.restText.split(separator: "\n", omittingEmptySubsequences: false).prefix(16).map { line in
        var cells = line.split(separator: "\t", omittingEmptySubsequences: false).prefix(3).map(String.init)
        while cells.count < 3 { cells.append("") }
        return cells
    }
    let value = FuzzRows(tableRows: TextRows(header: header, rows: rows))
    let forTerminal = options & 1 == 1
    let guarding = options & 2 == 2

    let table = RenderedOutput.render(value, as: .table, forTerminal: forTerminal)
    fuzzCheck(!hasControl(table, allowingCarriageReturn: false), "the table shows a control character")
    let csv = RenderedOutput.render(value, as: .csv, guardingFormulas: guarding, forTerminal: forTerminal)
    let json = RenderedOutput.render(value, as: .json, forTerminal: forTerminal)
    if forTerminal {
        fuzzCheck(!hasControl(csv, allowingCarriageReturn: true), "CSV for a terminal shows a control character")
        fuzzCheck(!hasControl(json, allowingCarriageReturn: true), "JSON for a terminal shows a control character")
        _ = RenderedOutput.terminalSafe(input.restText)
        return 0
    }
    if !guarding {
        fuzzCheck(readCSV(csv) == [header] + rows, "CSV does not read back to the cells")
    }
    let decoded = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [[String: String]]
    fuzzCheck(decoded == rows.map { Dictionary(uniqueKeysWithValues: zip(header, $0)) },
              "JSON does not read back to the cells")
    return 0
}

struct FuzzRows: Renderable {
    var tableRows: TextRows
}

/// Whether `text` holds a control or format character other than a newline (and a carriage return, if allowed).
func hasControl(_ text: String, allowingCarriageReturn: Bool) -> Bool {
    text.unicodeScalars.contains { scalar in
        if scalar == "\n" || (allowingCarriageReturn && scalar == "\r") { return false }
        let category = scalar.properties.generalCategory
        return category == .control || category == .format
    }
}

/// An RFC 4180 reader (CRLF record ends, `""` inside quotes), written independently of the writer under test.
func readCSV(_ text: String) -> [[String]] {
    var records: [[String]] = []
    var record: [String] = []
    var field = String.UnicodeScalarView()
    var quoted = false
    var scalars = Array(text.unicodeScalars)[...]
    while let scalar = scalars.popFirst() {
        if quoted {
            if scalar == "\"" {
                if scalars.first == "\"" { scalars.removeFirst(); field.append("\"") } else { quoted = false }
            } else {
                field.append(scalar)
            }
        } else if scalar == "\"" {
            quoted = true
        } else if scalar == "," {
            record.append(String(field)); field = String.UnicodeScalarView()
        } else if scalar == "\r" && scalars.first == "\n" {
            scalars.removeFirst()
            record.append(String(field)); field = String.UnicodeScalarView()
            records.append(record); record = []
        } else {
            field.append(scalar)
        }
    }
    if !field.isEmpty || !record.isEmpty { record.append(String(field)); records.append(record) }
    return records
}

runLibFuzzer { data, size in fuzz(data ?? emptyInput, size) }
