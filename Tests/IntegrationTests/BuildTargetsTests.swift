import Foundation
import TestSupport
import XCTest

/// Issue 26: the Makefile's targets a newcomer runs first. `make test` builds the release products through
/// `make release` (so a broken release build fails the run before any test) and ends with the count line of
/// scripts/test-summary; `make demo` runs the release build.
final class BuildTargetsTests: XCTestCase {
    private let root = TestServices.repositoryRoot

    /// The benchmarks are built beside the binary under test: under `make test` that is `make release`'s output,
    /// which the bench targets use (a release build of every target failed on TestSupport's XCTest).
    func testTheBenchmarksAreBuiltBesideTheBinaryUnderTest() throws {
        let binDirectory = URL(fileURLWithPath: try piivaultBinary()).deletingLastPathComponent()
        let bench = binDirectory.appendingPathComponent("piivault-bench").path
        XCTAssertTrue(FileManager.default.isExecutableFile(atPath: bench), "no \(bench): make release builds it")
        let usage = try runProcess(bench, [])
        XCTAssertNotEqual(usage.status, 0, "without arguments it prints its usage and fails")
        XCTAssertFalse((usage.stdout + usage.stderr).isEmpty)
    }

    /// What `make release`, `make test` and `make demo` run (`make -n`: printed, not run).
    func testReleaseTestAndDemoUseTheReleaseProducts() throws {
        let release = try runProcess("make", ["-n", "release"], currentDirectory: root)
        XCTAssertEqual(release.status, 0, release.stderr)
        XCTAssertTrue(release.stdout.contains("for product in piivault piivault-bench"), release.stdout)
        XCTAssertTrue(release.stdout.contains("-c release --static-swift-stdlib --product $product"), release.stdout)
        let test = try runProcess("make", ["-n", "test"], currentDirectory: root)
        XCTAssertTrue(test.stdout.contains("for product in piivault piivault-bench"), "make test builds through make release: \(test.stdout)")
        XCTAssertTrue(test.stdout.contains("scripts/test-summary .build/test-results.xml"), test.stdout)
        let demo = try runProcess("make", ["-n", "demo"], currentDirectory: root)
        XCTAssertTrue(demo.stdout.contains("PIIVAULT=\"$(swift build -c release --static-swift-stdlib --show-bin-path)/piivault\""),
                      "make demo runs the release build: \(demo.stdout)")
        XCTAssertFalse(demo.stdout.split(separator: "\n").contains("swift build"), "no debug build for the demo: \(demo.stdout)")
    }

    /// scripts/test-summary: one line `N passed, N failed, N skipped` from the xunit results, exit 1 on a failure or
    /// when there are no results.
    func testTheTestSummaryCountsTheXUnitResults() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("summary-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        func summary(_ cases: String) throws -> ProcessResult {
            let file = folder.appendingPathComponent("results-\(UUID().uuidString).xml")
            try Data("""
                <?xml version="1.0" encoding="UTF-8"?>
                <testsuites>
                <testsuite name="TestResults" errors="0" tests="3" failures="1" time="1.0">
                \(cases)
                </testsuite>
                </testsuites>
                """.utf8).write(to: file)
            return try runProcess(root.appendingPathComponent("scripts/test-summary").path, [file.path])
        }
        let passed = #"<testcase classname="A" name="a" time="0.1"></testcase>"#
        let failed = #"<testcase classname="A" name="b" time="0.1"><failure message="failed"></failure></testcase>"#
        let skipped = #"<testcase classname="A" name="c" time="0.1"><skipped/></testcase>"#

        let mixed = try summary(passed + passed + failed + skipped)
        XCTAssertEqual(mixed.stdout, "2 passed, 1 failed, 1 skipped\n")
        XCTAssertEqual(mixed.status, 1)
        let green = try summary(passed + skipped)
        XCTAssertEqual(green.stdout, "1 passed, 0 failed, 1 skipped\n")
        XCTAssertEqual(green.status, 0)
        let absent = try runProcess(root.appendingPathComponent("scripts/test-summary").path,
                                    [folder.appendingPathComponent("none.xml").path])
        XCTAssertEqual(absent.status, 1)
        XCTAssertTrue(absent.stdout.contains("no test results"), absent.stdout)
    }
}
