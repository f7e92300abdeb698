import PIIVault
import TestSupport
import XCTest

final class TokenTests: XCTestCase {
    func testTheParserGivesEachSampleItsVerdict() {
        for (text, isToken) in TokenSamples.all {
            XCTAssertEqual(Token(parsing: text) != nil, isToken, "\(text.debugDescription)")
        }
    }

    func testAParsedTokenPrintsAsItWasWritten() throws {
        for (text, isToken) in TokenSamples.all where isToken {
            XCTAssertEqual(try XCTUnwrap(Token(parsing: text)).description, text)
        }
        let token = try XCTUnwrap(Token(parsing: "dev.v12." + String(repeating: "ab", count: 32)))
        XCTAssertEqual(token.field, .deviceID)
        XCTAssertEqual(token.version, 12)
        XCTAssertEqual(token.digest, String(repeating: "ab", count: 32))
        XCTAssertNil(Token(field: .ip, version: 0, digest: token.digest))
        XCTAssertEqual(Token(field: .ip, version: 3, digest: token.digest)?.description, "ip.v3." + token.digest)
    }

    func testTheTokenizerWritesTokensTheParserReadsBack() throws {
        let key = TokenKey.generate()
        for version in [1, 2, 10, Token.maximumVersion] {
            let tokenizer = Tokenizer(key: key, version: version)
            for (value, field) in [("192.0.2.1", PIIField.ip), ("device-1", .deviceID)] {
                let text = try tokenizer.tokenize(value, as: field).token
                let token = try XCTUnwrap(Token(parsing: text), text)
                XCTAssertEqual(token.field, field)
                XCTAssertEqual(token.version, version)
                XCTAssertEqual(token.description, text)
                XCTAssertEqual(tokenizer.tokenValue(forCanonical: try Canonical.canonicalize(value, as: field), field: field), token)
            }
        }
    }
}
