import Foundation

/// The form of a URL that may appear in a message or a log line: a password in its user information (a user given
/// alone, which may be a token, too) and the values of
/// its query are replaced by `***` (a Pushgateway's basic-auth password, an `api_key=` or a container endpoint's
/// `token=`), the fragment is dropped. Every URL the user gave that reaches a message goes through it.
///
/// Works on the text itself rather than on `URL`, so that a URL too malformed to parse is redacted all the same.
public func redactedURL(_ text: String) -> String {
    var rest = Substring(text)
    var result = ""
    if let scheme = rest.range(of: "://") {
        result += rest[..<scheme.upperBound]
        rest = rest[scheme.upperBound...]
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" || $0 == "#" } ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        if let at = authority.lastIndex(of: "@") {
            let userInfo = authority[..<at]
            if let colon = userInfo.firstIndex(of: ":") {
                result += userInfo[..<colon] + ":***"
            } else {
                // A user alone may be the secret (a token sent as the Basic user, with no password).
                result += "***"
            }
            result += authority[at...]
        } else {
            result += authority
        }
        rest = rest[authorityEnd...]
    }
    if let hash = rest.firstIndex(of: "#") { rest = rest[..<hash] }
    guard let question = rest.firstIndex(of: "?") else { return result + rest }
    result += rest[...question]
    let pairs = rest[rest.index(after: question)...].split(separator: "&", omittingEmptySubsequences: false)
    result += pairs.map { pair in
        guard let equals = pair.firstIndex(of: "=") else { return String(pair) }
        return pair[...equals] + "***"
    }.joined(separator: "&")
    return result
}

/// `text` with every URL in it (a word holding `://`) passed through `redactedURL`: for error details from a lower
/// layer that may quote the URL they failed on.
public func redactingURLs(in text: String) -> String {
    guard text.contains("://") else { return text }
    return text.split(separator: " ", omittingEmptySubsequences: false)
        .map { $0.contains("://") ? redactedURL(String($0)) : String($0) }
        .joined(separator: " ")
}
