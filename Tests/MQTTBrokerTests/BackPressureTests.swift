import Logging
import NIOCore
import NIOEmbedded
import Testing

@testable import MQTTBroker

@Suite("Back-pressure")
struct BackPressureTests {
    /// The last `autoRead` value the handler set on the channel.
    private func autoRead(_ channel: EmbeddedChannel) -> Bool? {
        channel.options.last { $0.option is ChannelOptions.Types.AutoReadOption }?.value as? Bool
    }

    @Test("a client that does not read what we send stops being read from, until its buffer drains")
    func readingFollowsWritability() throws {
        let core = BrokerCore(configuration: .standalone, logger: Logger(label: "test.backpressure"), authenticator: nil)
        let channel = EmbeddedChannel(handler: ConnectionHandler(core: core, listener: .init(port: 0)))
        defer { _ = try? channel.finish() }
        #expect(autoRead(channel) == nil)

        channel.isWritable = false
        channel.pipeline.fireChannelWritabilityChanged()
        #expect(autoRead(channel) == false)

        channel.isWritable = true
        channel.pipeline.fireChannelWritabilityChanged()
        #expect(autoRead(channel) == true)
    }
}
