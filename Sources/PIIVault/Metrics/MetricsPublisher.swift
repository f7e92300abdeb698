import AWS
import Foundation

/// Where a run's metrics go: a file for node_exporter's textfile collector, a Pushgateway, or both.
public struct MetricsPublisher: Sendable, Equatable {
    /// The textfile path (`*.prom` in the collector's folder); nil for none.
    public var filePath: String?
    /// The Pushgateway's base URL (`http://pushgateway:9091`); nil for none.
    public var pushURL: String?
    /// The Pushgateway job name.
    public static let job = "piivault_etl"

    public init(filePath: String?, pushURL: String?) {
        self.filePath = filePath
        self.pushURL = pushURL
    }

    /// True when there is somewhere to publish to.
    public var isEnabled: Bool { filePath != nil || pushURL != nil }

    /// Writes and pushes `metrics`. A run that did not succeed keeps the last success time the textfile already
    /// had, and pushes without it (a Pushgateway POST replaces only the metrics it names). Every target is tried;
    /// the first failure is thrown after. The push goes through `transport` (the AWS module's HTTP seam; by default
    /// AsyncHTTPClient verifying against the system trust store).
    public func publish(_ metrics: ETLMetrics, transport: any HTTPTransport = AsyncHTTPClientTransport()) async throws {
        var firstError: (any Error)?
        if let filePath {
            do {
                if !metrics.hasLastSuccess, let previous = Self.lastSuccess(inFileAt: filePath) {
                    metrics.carryLastSuccess(previous)
                }
                try Self.writeAtomically(metrics.render(), to: filePath)
            } catch {
                firstError = error
            }
        }
        if let pushURL {
            do { try await Self.push(metrics.render(), to: pushURL, transport: transport) } catch { firstError = firstError ?? error }
        }
        if let firstError { throw firstError }
    }

    /// The value of the last-success gauge in an earlier textfile, if any.
    static func lastSuccess(inFileAt path: String) -> Double? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(ETLMetrics.lastSuccessName + " ") {
            return Double(line.dropFirst(ETLMetrics.lastSuccessName.count + 1).trimmingCharacters(in: .whitespaces))
        }
        return nil
    }

    /// node_exporter reads the folder at any moment: a temporary file beside the target, then a rename. World-readable:
    /// the collector usually runs as another user; metrics hold counts, no PII.
    static func writeAtomically(_ text: String, to path: String) throws {
        do {
            try AtomicFile.replace(path, with: Array(text.utf8), mode: 0o644)
        } catch {
            throw MetricsError.file(path: path, reason: error.reason)
        }
    }

    /// POSTs the text to `<pushURL>/metrics/job/piivault_etl`. A user and password in the URL
    /// (`https://user:password@gateway`) are sent as HTTP Basic authentication, which the HTTP library would not do.
    static func push(_ text: String, to pushURL: String, transport: any HTTPTransport) async throws {
        let base = pushURL.hasSuffix("/") ? String(pushURL.dropLast()) : pushURL
        guard var components = URLComponents(string: base + "/metrics/job/" + job),
              let scheme = components.scheme, scheme == "http" || scheme == "https", components.host != nil else {
            throw MetricsError.push(url: pushURL, reason: "not an http:// or https:// URL")
        }
        var headers = [("Content-Type", "text/plain; version=0.0.4")]
        if let user = components.user {
            let credentials = user + ":" + (components.password ?? "")
            headers.append(("Authorization", "Basic " + Data(credentials.utf8).base64EncodedString()))
            components.user = nil
            components.password = nil
        }
        guard let url = components.url else {
            throw MetricsError.push(url: pushURL, reason: "not an http:// or https:// URL")
        }
        let request = HTTPRequest(method: "POST", url: url, headers: headers, body: Array(text.utf8),
                                  maxResponseBytes: 64 * 1024)
        let response: HTTPResponse
        do {
            response = try await transport.send(request, timeout: .seconds(10))
        } catch {
            throw MetricsError.push(url: pushURL, reason: "\(error)")
        }
        guard (200..<300).contains(response.status) else {
            let detail = String(decoding: response.body.prefix(4096), as: UTF8.self)
                .split(separator: "\n").first.map(String.init) ?? ""
            throw MetricsError.push(url: pushURL, reason: "HTTP \(response.status) \(detail)")
        }
    }
}

/// Metrics could not be written or pushed. The run's own outcome and exit status are unchanged by it.
public enum MetricsError: PIIVaultReportableError {
    case file(path: String, reason: String)
    case push(url: String, reason: String)

    public var message: String {
        switch self {
        case let .file(path, reason):
            return "cannot write the metrics file \(path): \(reason); check the folder and its permissions"
        case let .push(url, reason):
            return "cannot push metrics to \(redactedURL(url)): \(redactingURLs(in: reason)); check the Pushgateway URL and that it is up"
        }
    }

    public var exitCode: PIIVaultExitCode { .unavailable }
}
