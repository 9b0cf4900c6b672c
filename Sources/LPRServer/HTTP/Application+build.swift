import Hummingbird
import Logging

/// Builds the HTTP application of an LPR server, as Hummingbird's template does: the REST API
/// under `/api`, the live feed at `/api/events`, `/health`, `/metrics` and the dashboard at `/`.
///
/// The port opens only once `server` is ready (subscriptions acknowledged), so a client that
/// can connect can use every route. Run the result as a `Service` beside the server.
public func buildApplication(server: LPRServer, configuration: LPRHTTPConfiguration, logger: Logger) -> some ApplicationProtocol {
    var application = Application(
        router: buildRouter(server: server, configuration: configuration),
        configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "databus"),
        onServerRunning: { channel in await configuration.onServerRunning(channel.localAddress) },
        logger: logger
    )
    application.beforeServerStarts { try await server.waitUntilReady() }
    return application
}

/// The routes of ``buildApplication(server:configuration:logger:)``: errors are JSON, `/api`
/// needs a bearer token (except its OpenAPI document), the rest is public.
public func buildRouter(server: LPRServer, configuration: LPRHTTPConfiguration) -> Router<BasicRequestContext> {
    let router = Router(context: BasicRequestContext.self)
    router.add(middleware: JSONErrorMiddleware())
    let routes = APIRoutes(server: server, configuration: configuration)
    routes.addPublicRoutes(to: router)
    let api = router.group("api").add(middleware: BearerTokenMiddleware(tokens: configuration.tokens))
    routes.addAPIRoutes(to: api)
    DashboardFiles.shared.addRoutes(to: router)
    return router
}
