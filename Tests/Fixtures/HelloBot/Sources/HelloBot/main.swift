import SwitchboardAgent

struct Hello: Plugin {
    var commands: [Command] {
        [Command("hello", help: "Greets you.", arguments: [.word("name", optional: true)]) { call, context in
            try await context.reply("Hello, \(call.string("name") ?? context.message?.sender?.displayName ?? "you")!")
        }]
    }
}

try await Agent.main(configurationFile: CommandLine.arguments.dropFirst().first ?? "agent.yml", plugins: [PluginFactory("hello") { Hello() }])
