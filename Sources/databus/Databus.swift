import ArgumentParser

/// The one executable of Databus; every part of the product is a subcommand.
@main
struct Databus: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "databus",
        abstract: "The MQTT databus of an edge-AI licence-plate recognition system.",
        discussion: """
            Databus ships an embedded MQTT 3.1/3.1.1/5.0 broker, a client library, the LPR server, \
            the edge agents and their tools in one executable. Run `databus <command> --help` \
            for what each command does.
            """,
        version: DatabusVersion.current,
        subcommands: [
            UpCommand.self, BrokerCommand.self, ServerCommand.self, PubCommand.self, SubCommand.self, TopicCommand.self, CertsCommand.self,
            PasswdCommand.self, BenchCommand.self, CameraCommand.self, PipelineCommand.self, GatewayCommand.self,
        ]
    )
}

enum DatabusVersion {
    static let current = "0.1.0"
}
