import AWS
import XCTest

/// Issue 24, defect 3: one redaction for every URL that reaches a message.
final class URLRedactionTests: XCTestCase {
    func testPasswordsAndQueryValuesAreReplaced() {
        XCTAssertEqual(redactedURL("http://pushuser:pushS3cret@127.0.0.1:9/?api_key=QSECRET"),
                       "http://pushuser:***@127.0.0.1:9/?api_key=***")
        XCTAssertEqual(redactedURL("http://user:s3cret@host/c?token=q&x=1&flag#frag"), "http://user:***@host/c?token=***&x=***&flag")
        XCTAssertEqual(redactedURL("https://host:9091/metrics"), "https://host:9091/metrics")
        // A user alone may be a token (Basic auth with no password): hidden too.
        XCTAssertEqual(redactedURL("http://tok3nSecret@host/"), "http://***@host/")
        XCTAssertEqual(redactedURL("http://a:b@c@host/"), "http://a:***@host/", "the last @ ends the user information")
        XCTAssertEqual(redactedURL("not a url?k=secret"), "not a url?k=***")
    }

    func testURLsInsideText() {
        XCTAssertEqual(redactingURLs(in: "connect to http://u:p@h:1/?t=s failed"), "connect to http://u:***@h:1/?t=*** failed")
        XCTAssertEqual(redactingURLs(in: "plain reason"), "plain reason")
    }
}
