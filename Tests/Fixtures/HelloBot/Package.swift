// swift-tools-version: 6.1
// A bot written outside Switchboard: the README's "Write a bot", checked by scripts/checks/outside-package.sh.
import PackageDescription

let package = Package(
    name: "HelloBot",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "switchboard", path: "../../.."),
    ],
    targets: [
        .executableTarget(name: "HelloBot", dependencies: [.product(name: "SwitchboardAgent", package: "switchboard")]),
        .testTarget(name: "HelloBotTests", dependencies: ["HelloBot", .product(name: "SwitchboardAgentTesting", package: "switchboard")]),
    ]
)
