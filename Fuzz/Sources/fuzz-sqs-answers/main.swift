import AWS
import Foundation
import FuzzSupport
import Logging
import SQS

/// SQS answers in both protocols (query/XML and JSON), success and error, as `SQSClient` reads them: the first
/// byte chooses the protocol, the operation and the HTTP status (plus an `x-amzn-query-error` header); the rest is
/// the body. Errors thrown are the client's answers, not failures.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let selector = input.byte()
    let json = selector & 1 == 1
    let operation = (selector >> 1) % 8
    let status = fuzzStatus(input.byte())
    let headers = selector & 0x80 != 0
        ? [(name: "x-amzn-query-error", value: "AWS.SimpleQueueService.NonExistentQueue;Sender")] : []
    let transport = CannedTransport(status: status, headers: headers, body: input.rest)
    let configuration = SQSConfiguration(
        credentialsProvider: StaticCredentialsProvider(fuzzCredentials), region: "us-east-1",
        endpoint: URL(string: "https://sqs.us-east-1.amazonaws.com/")!, wireProtocol: json ? .json : .query,
        retry: SQSRetryPolicy(maxAttempts: 1), transport: transport)
    let client = SQSClient(configuration: configuration, transport: transport, logger: fuzzLogger)
    let queue = "https://sqs.us-east-1.amazonaws.com/123456789012/fuzz"
    let entries = [SQSReceiptEntry(id: "0", receiptHandle: "rh-0"), SQSReceiptEntry(id: "1", receiptHandle: "rh-1")]
    runBlocking {
        do {
            switch operation {
            case 0, 1, 2:
                let messages = try await client.receiveMessages(queueURL: queue)
                for message in messages {
                    _ = message.sentTimestampMilliseconds
                    _ = message.approximateReceiveCount
                }
            case 3: _ = try await client.deleteMessageBatch(queueURL: queue, entries: entries)
            case 4: _ = try await client.changeMessageVisibilityBatch(queueURL: queue, entries: entries,
                                                                       visibilityTimeout: 0)
            case 5: _ = try await client.getQueueAttributes(queueURL: queue)
            case 6: _ = try await client.sendMessageBatch(queueURL: queue,
                                                          entries: [SQSSendEntry(id: "0", body: "{}")])
            default: _ = try await client.getQueueURL(queueName: "fuzz")
            }
        } catch {
            _ = "\(error)"
        }
    }
    return 0
}

/// Logs nothing: the harness runs millions of calls.
let fuzzLogger = Logger(label: "fuzz", factory: { _ in SwiftLogNoOpLogHandler() })

runLibFuzzer { data, size in fuzz(data ?? emptyInput, size) }
