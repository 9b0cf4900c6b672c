import NIOConcurrencyHelpers
import NIOCore

/// The broker's bridges (`connection` blocks), made at start-up, stopped at shutdown.
final class BridgeSet: Sendable {
    private let bridges = NIOLockedValueBox<[Bridge]>([])

    var all: [Bridge] { bridges.withLockedValue { $0 } }

    fileprivate func add(_ bridge: Bridge) {
        bridges.withLockedValue { $0.append(bridge) }
    }
}

extension BrokerCore {
    /// Makes every configured bridge and its session (subscribed at once, so the listeners,
    /// bound after this, never route a message the bridge misses) and starts connecting.
    /// Called once the store is open.
    /// - Throws: ``TLSSetupError`` when a bridge's TLS files do not load.
    func startBridges(on group: any EventLoopGroup) throws(TLSSetupError) {
        for configuration in self.configuration.value.bridges {
            let bridge = try Bridge(configuration, core: self, eventLoop: group.next())
            bridges.add(bridge)
            bridge.start()
        }
    }

    /// Stops every bridge: the remote brokers are told "0" and DISCONNECT.
    func stopBridges() async {
        for bridge in bridges.all { try? await bridge.stop().get() }
    }
}
