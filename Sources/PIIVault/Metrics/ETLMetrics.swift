import Foundation
import NIOConcurrencyHelpers
import Prometheus

/// The metrics of one ETL run, the way batch jobs are watched: counters for what the run did, its duration, the time
/// of the last successful run, queue depth at start and end, and a histogram of batch commit latency. Held in a
/// swift-prometheus registry, rendered in the Prometheus text format for node_exporter's textfile collector or a
/// Pushgateway (``MetricsPublisher``).
public final class ETLMetrics: Sendable {
    /// The registry every metric lives in.
    public let registry = PrometheusCollectorRegistry()
    /// Gauges that mean something only once set (queue depths, the last success): rendered only then, so that a
    /// file source shows no queue depth and a failed run does not overwrite the last success with 0.
    private let setOptional = NIOLockedValueBox(Set<String>())
    private static let optionalNames: Set<String> = [
        lastSuccessName, "piivault_etl_queue_depth_start_messages", "piivault_etl_queue_depth_end_messages",
    ]

    /// Metric names that `MetricsPublisher` treats specially.
    public static let lastSuccessName = "piivault_etl_last_success_timestamp_seconds"

    private let received: Counter
    private let loaded: Counter
    private let duplicates: Counter
    private let quarantined: Counter
    private let suppressed: Counter
    private let valuesSealed: Counter
    private let deleteFailures: Counter
    private let duration: Gauge
    private let success: Gauge
    private let finished: Gauge
    private let lastSuccess: Gauge
    private let queueDepthAtStart: Gauge
    private let queueDepthAtEnd: Gauge
    private let batchCommit: DurationHistogram

    public init() {
        received = registry.counter(
            "piivault_etl_messages_received_total", help: "Messages received from the source by this run.")
        loaded = registry.counter(
            "piivault_etl_messages_loaded_total", help: "Messages loaded into user_logins by this run.")
        duplicates = registry.counter(
            "piivault_etl_messages_duplicate_total",
            help: "Messages skipped because their message id was already loaded (redeliveries, replays).")
        quarantined = registry.counter(
            "piivault_etl_messages_quarantined_total",
            help: "Messages that broke a rule and went to vault.quarantine, sealed.")
        suppressed = registry.counter(
            "piivault_etl_messages_suppressed_total",
            help: "Messages of users erased by piivault forget: not loaded, deleted from the queue.")
        valuesSealed = registry.counter(
            "piivault_etl_values_sealed_total", help: "Original values sealed into vault.secrets by this run.")
        deleteFailures = registry.counter(
            "piivault_etl_delete_failures_total",
            help: "Committed messages the queue refused to delete (they are redelivered and skipped).")
        duration = registry.gauge(
            "piivault_etl_run_duration_seconds", help: "How long the run took, in seconds.")
        success = registry.gauge(
            "piivault_etl_run_success", help: "1 when the run completed or was interrupted cleanly, 0 when it failed.")
        finished = registry.gauge(
            "piivault_etl_run_end_timestamp_seconds", help: "When the run ended, in Unix seconds.")
        lastSuccess = registry.gauge(
            Self.lastSuccessName, help: "When the last successful run ended, in Unix seconds.")
        queueDepthAtStart = registry.gauge(
            "piivault_etl_queue_depth_start_messages",
            help: "Approximate messages visible in the queue when the run started.")
        queueDepthAtEnd = registry.gauge(
            "piivault_etl_queue_depth_end_messages",
            help: "Approximate messages visible in the queue when the run ended.")
        batchCommit = registry.durationHistogram(
            "piivault_etl_batch_commit_duration_seconds",
            buckets: [.milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
                      .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5),
                      .seconds(5), .seconds(10)],
            help: "Time to load and commit one batch, in seconds.")
    }

    /// The queue's approximate depth when the run started (not recorded for a file).
    func recordQueueDepthAtStart(_ depth: Int?) {
        if let depth {
            queueDepthAtStart.set(to: Double(depth))
            markSet("piivault_etl_queue_depth_start_messages")
        }
    }

    /// One batch's load-and-commit time.
    func recordBatchCommit(_ duration: Duration) {
        batchCommit.record(duration)
    }

    /// The run's end: its counts, duration and outcome; the queue's depth at the end.
    public func recordEnd(_ summary: ETLSummary, queueDepth: Int?, at end: Date = Date()) {
        received.increment(by: Int64(summary.received))
        loaded.increment(by: Int64(summary.loaded))
        duplicates.increment(by: Int64(summary.duplicates))
        quarantined.increment(by: Int64(summary.quarantined))
        suppressed.increment(by: Int64(summary.suppressed))
        valuesSealed.increment(by: Int64(summary.valuesSealed))
        deleteFailures.increment(by: Int64(summary.deleteFailures))
        duration.set(to: summary.seconds)
        finished.set(to: end.timeIntervalSince1970)
        let succeeded = summary.outcome == "completed" || summary.outcome == "interrupted"
        success.set(to: succeeded ? 1 : 0)
        if succeeded {
            lastSuccess.set(to: end.timeIntervalSince1970)
            markSet(Self.lastSuccessName)
        }
        if let queueDepth {
            queueDepthAtEnd.set(to: Double(queueDepth))
            markSet("piivault_etl_queue_depth_end_messages")
        }
    }

    /// Carries an earlier last-success time over, for a run that did not succeed (so a failure leaves it unchanged).
    func carryLastSuccess(_ seconds: Double) {
        lastSuccess.set(to: seconds)
        markSet(Self.lastSuccessName)
    }

    /// Whether a last-success time will be rendered (this run succeeded, or an earlier one was carried over).
    var hasLastSuccess: Bool { setOptional.withLockedValue { $0.contains(Self.lastSuccessName) } }

    private func markSet(_ name: String) {
        _ = setOptional.withLockedValue { $0.insert(name) }
    }

    /// The Prometheus text format of every metric, less the optional gauges never set.
    public func render() -> String {
        let unset = setOptional.withLockedValue { Self.optionalNames.subtracting($0) }
        return registry.emitToString().split(separator: "\n", omittingEmptySubsequences: false).filter { line in
            !unset.contains { name in
                line.hasPrefix("# HELP \(name) ") || line.hasPrefix("# TYPE \(name) ") || line.hasPrefix("\(name) ")
                    || line.hasPrefix("\(name){")
            }
        }.joined(separator: "\n")
    }
}

/// swift-prometheus names a metric by a descriptor; ours are whole names already (unit suffix included).
private extension PrometheusCollectorRegistry {
    func counter(_ name: String, help: String) -> Counter {
        makeCounter(descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help))
    }

    func gauge(_ name: String, help: String) -> Gauge {
        makeGauge(descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help))
    }

    func durationHistogram(_ name: String, buckets: [Duration], help: String) -> DurationHistogram {
        makeDurationHistogram(descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help),
                              buckets: buckets)
    }
}
