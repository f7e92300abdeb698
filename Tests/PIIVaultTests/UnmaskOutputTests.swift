@testable import PIIVault
import XCTest

/// How `unmask` prints what it recovered: values exactly in JSON and CSV, escaped in a terminal table.
final class UnmaskOutputTests: XCTestCase {
    private let hostile = UnmaskedTokens(
        values: [UnmaskedValue(token: "dev.v1.aa", field: "device_id", value: "a,\"b\"\n\u{1b}[31mred")],
        unknownTokens: [])

    /// Found by `make fuzz` (escaping): a value holding CRLF ("\r\n" is one Character, equal to neither "\r" nor
    /// "\n") was written unquoted, so the CSV export gained a row.
    func testACSVValueWithCRLFIsQuoted() {
        let crlf = UnmaskedTokens(values: [UnmaskedValue(token: "dev.v1.aa", field: "device_id", value: "x\r\ny")],
                                  unknownTokens: [])
        XCTAssertEqual(OutputFormat.csv.render(crlf), "token,field,value\r\ndev.v1.aa,device_id,\"x\r\ny\"\r\n")
    }

    func testATableShowsControlCharactersEscaped() {
        let table = OutputFormat.table.render(hostile)
        XCTAssertEqual(table, "token      field      value\ndev.v1.aa  device_id  a,\"b\"\\u{a}\\u{1b}[31mred\n")
    }

    func testCSVAndJSONKeepTheValueExactly() throws {
        XCTAssertEqual(OutputFormat.csv.render(hostile),
                       "token,field,value\r\ndev.v1.aa,device_id,\"a,\"\"b\"\"\n\u{1b}[31mred\"\r\n")
        let json = try JSONSerialization.jsonObject(with: Data(OutputFormat.json.render(hostile).utf8)) as? [[String: String]]
        XCTAssertEqual(json?.first?["value"], "a,\"b\"\n\u{1b}[31mred")
    }

    func testJSONEscapesBidiAndC1CharactersButKeepsTheSameString() throws {
        let spoof = UnmaskedTokens(
            values: [UnmaskedValue(token: "dev.v1.aa", field: "device_id", value: "abc\u{202e}fed\u{85}\u{e0001}")],
            unknownTokens: [])
        let rendered = OutputFormat.json.render(spoof)
        XCTAssertFalse(rendered.unicodeScalars.contains { $0.value == 0x202E || $0.value == 0x85 || $0.value == 0xE0001 })
        XCTAssertTrue(rendered.contains(#"abc\u202efed\u0085\udb40\udc01"#), rendered)
        let json = try JSONSerialization.jsonObject(with: Data(rendered.utf8)) as? [[String: String]]
        XCTAssertEqual(json?.first?["value"], "abc\u{202e}fed\u{85}\u{e0001}")
    }

    func testALoginWithoutASealedValueSaysSo() throws {
        let login = UnmaskedLogin(
            userID: "u1", deviceType: "ios", maskedIP: "ip.v1.aa", ip: nil, maskedDeviceID: "dev.v1.bb",
            deviceID: "d-1", locale: nil, appVersion: 96000, appVersionText: "0.96", createDate: "2024-05-01",
            messageID: "m1")
        XCTAssertTrue(OutputFormat.table.render([login]).contains("(not in vault)"))
        XCTAssertEqual(OutputFormat.csv.render([login]).split(separator: "\r\n").last,
                       "u1,2024-05-01,ios,,d-1,,96000,0.96,ip.v1.aa,dev.v1.bb,m1")
        let object = try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(OutputFormat.json.render([login]).utf8))
                                    as? [[String: Any]])?.first)
        XCTAssertTrue(object["ip"] is NSNull)
        XCTAssertEqual(object["app_version"] as? Int, 96000)
    }

    func testAQuarantinedBodyThatIsNotUTF8IsCarriedInBase64() throws {
        let message = UnmaskedMessage(messageID: "m1", receivedAt: "2024-05-01 00:00:00+00", reason: "not JSON",
                                      body: [0xff, 0xfe, 0x41])
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(OutputFormat.json.render(message).utf8))
                                   as? [String: Any])
        XCTAssertTrue(object["body"] is NSNull)
        XCTAssertEqual(object["body_base64"] as? String, "//5B")
    }
}
