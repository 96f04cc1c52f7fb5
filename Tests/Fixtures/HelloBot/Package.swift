// swift-tools-version: 6.1
// A bot written outside Switchboard, as the README's "Write a bot" shows; scripts/checks/outside-package.sh (run by scripts/test.sh) builds it.
import PackageDescription

let package = Package(
    name: "HelloBot",
    platforms: [.macOS(.v15)],
    dependencies: [
        // In your own package: .package(url: "https://github.com/OWNER/switchboard.git", branch: "main")
        .package(name: "switchboard", path: "../../.."),
    ],
    targets: [
        .executableTarget(
            name: "HelloBot",
            dependencies: [.product(name: "SwitchboardAgent", package: "switchboard")]
        ),
    ]
)
