/// AWS Signature Version 4 request signing. Pure functions, no I/O.
public enum SigV4 {}
