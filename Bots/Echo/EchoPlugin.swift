import SwitchboardAgent

/// Says back what it is told: `!echo hello`. For demos and tests.
public struct EchoPlugin: Plugin {
    /// The plugin.
    public init() {}

    public var name: String { "echo" }

    public var commands: [Command] {
        [
            Command("echo", help: "Says TEXT back.", arguments: [.text("text", help: "what to say")]) { call, context in
                try await context.reply(call.string("text") ?? "")
            },
            Command("ping", help: "Answers pong, to see that the bot is alive.") { _, context in
                try await context.reply("pong")
            },
        ]
    }

    /// `echo` in an agent's configuration.
    public static let factory = PluginFactory("echo") { EchoPlugin() }
}
