import SigV4

/// Amazon SQS client over AsyncHTTPClient.
public enum SQS {}
