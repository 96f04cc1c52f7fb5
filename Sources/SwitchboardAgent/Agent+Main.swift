import Foundation
import Logging
import ServiceLifecycle

extension Agent {
    /// Runs an agent from a YAML file until SIGINT or SIGTERM, reloading it on SIGHUP: the whole
    /// `main` of a bot of your own.
    ///
    /// ```swift
    /// import SwitchboardAgent
    ///
    /// struct Hello: Plugin { … }
    ///
    /// try await Agent.main(configurationFile: "agent.yml", plugins: [PluginFactory("hello") { Hello() }])
    /// ```
    ///
    /// Problems in the file are printed all at once, and the process exits with status 1. A graceful
    /// stop that takes longer than ``maximumGracefulShutdownDuration`` (a handler that never ends)
    /// is escalated to cancellation.
    public static func main(configurationFile: String, plugins: [PluginFactory], logger: Logger? = nil) async throws {
        let configuration: AgentConfiguration
        do {
            configuration = try AgentConfiguration.load(file: configurationFile)
            let errors = check(configuration, plugins: plugins)
            if !errors.isEmpty { throw ConfigurationErrors(errors) }
        } catch {
            FileHandle.standardError.write(Data("\(configurationFile):\n\(error)\n".utf8))
            exit(1)
        }
        var logger = logger ?? Logger(label: "switchboard.agent")
        logger.logLevel = configuration.logLevel
        let agent = Agent(configuration: configuration, plugins: plugins, configurationFile: configurationFile, logger: logger)
        var groupConfiguration = ServiceGroupConfiguration(services: [.init(service: agent)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        groupConfiguration.maximumGracefulShutdownDuration = maximumGracefulShutdownDuration
        try await ServiceGroup(configuration: groupConfiguration).run()
    }
}
