import Foundation
import FuzzSupport
import SigV4

/// SigV4 canonicalisation of a request: the input's lines are the method, the URL, the query string, then headers
/// (`name:value`). Every stage runs: the canonical URI, query string and header block, the canonical request, and
/// the full signature of the URL as the clients sign it; plus `X-Amz-Date` parsing.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let lines = FuzzInput(data, size).restText.split(separator: "\n", omittingEmptySubsequences: false)
        .map(String.init)
    func line(_ index: Int) -> String { index < lines.count ? lines[index] : "" }
    let method = line(0), urlText = line(1), query = line(2)
    let headers: [(name: String, value: String)] = lines.dropFirst(3).map { header in
        guard let colon = header.firstIndex(of: ":") else { return (name: header, value: "") }
        return (name: String(header[..<colon]), value: String(header[header.index(after: colon)...]))
    }
    let payloadHash = SigV4.hexSHA256(Array(method.utf8))
    _ = SigV4.canonicalURI(urlText)
    _ = SigV4.canonicalQueryString(query)
    _ = SigV4.uriEncode(query)
    _ = SigV4.canonicalRequest(method: method, path: urlText, query: query, headers: headers,
                               payloadHash: payloadHash)
    if let date = SigV4.parseAmzDate(method) {
        fuzzCheck(SigV4.parseAmzDate(SigV4.amzDate(date)) == date, "an X-Amz-Date does not round-trip")
    }
    if let url = URL(string: urlText) {
        let signed = SigV4.sign(method: method, url: url, headers: headers, payloadHash: payloadHash,
                                credentials: SigV4.Credentials(accessKeyId: "AKIDFUZZ", secretAccessKey: "secret",
                                                               sessionToken: "token"),
                                region: "us-east-1", service: "sqs", date: Date(timeIntervalSince1970: 1_700_000_000))
        fuzzCheck(signed.contains { $0.name == "authorization" }, "a signed request has no Authorization header")
    }
    return 0
}

runLibFuzzer { data, size in fuzz(data ?? emptyInput, size) }
