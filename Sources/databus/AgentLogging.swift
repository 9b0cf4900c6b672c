import Foundation
import Logging
import UnixSignals

/// Logging and console output of the long-running agents (`databus pipeline`, `databus gateway`).
enum AgentLogging {
    /// Logs to standard error from `level` up.
    static func bootstrap(label: String, level: String) -> Logger {
        let level = Logger.Level(rawValue: level) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        var logger = Logger(label: label)
        logger.logLevel = level
        return logger
    }

    /// A line on standard error that ends the command.
    static func fail(_ message: String) {
        FileHandle.standardError.write(Data((message + "\n").utf8))
    }

    /// A summary line on standard error.
    static func report(_ message: String) {
        FileHandle.standardError.write(Data((message + "\n").utf8))
    }
}

/// SIGINT and SIGTERM for the agents: a graceful stop (disconnect, outbox kept).
enum AgentSignals {
    static func waitForTermination() async {
        let signals = await UnixSignalsSequence(trapping: .sigint, .sigterm)
        for await _ in signals { return }
    }
}
