// swift-tools-version:6.1
import PackageDescription

// A libFuzzer target for the MQTTCore decoder. It is a package of its own because SwiftPM
// links every executable with `--defsym main=<Target>_main`, which a fuzzer must provide
// itself (see scripts/fuzz). Build only with the fuzzer/address sanitizers:
//   swift build -c release -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library
let package = Package(
    name: "databus-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "databus", path: ".."),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.3"),
    ],
    targets: [
        .executableTarget(
            name: "DecoderFuzzer",
            dependencies: [
                .product(name: "MQTTCore", package: "databus"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        )
    ]
)
