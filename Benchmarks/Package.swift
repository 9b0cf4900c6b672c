// swift-tools-version: 6.1
//
// Microbenchmarks for MQTTCore, in a package of their own so that `swift build` /
// `swift test` of the main package never build them (nor fetch ordo-one/benchmark).
//
// Run from this directory:
//     swift package --allow-writing-to-package-directory benchmark --no-progress
//
import PackageDescription

let package = Package(
    name: "DatabusBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "databus", path: ".."),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.3"),
        // The default traits of 1.38.1 also enable "RuntimeInterposer", which needs a package
        // that is not available here; the malloc interposer alone is what the malloc metrics need.
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "CodecBenchmarks",
            dependencies: [
                .product(name: "MQTTCore", package: "databus"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/CodecBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        .executableTarget(
            name: "TopicBenchmarks",
            dependencies: [
                .product(name: "MQTTCore", package: "databus"),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/TopicBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ]
)
