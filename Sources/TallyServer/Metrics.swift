import Hummingbird
import Logging
import Metrics
import Prometheus

/// Prometheus metrics at `GET /metrics` on a listener of their own (`ServerSettings.metrics`): requests by route, method and status
/// (`tally_http_requests_total`), their latency (`tally_http_request_duration_seconds`, a histogram),
/// requests in flight, consume outcomes (`tally_consume_total`) and how many spends each group commit
/// carried (`tally_consume_batch_size`, a histogram).
public enum TallyMetrics {
    public static let registry = PrometheusCollectorRegistry()

    /// swift-metrics can be bootstrapped once per process; every application built here shares the registry.
    static let bootstrapped: Void = {
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.valueHistogramBuckets["tally_consume_batch_size"] = [1, 2, 4, 8, 16, 32, 64, 128]
        factory.nameAndLabelSanitizer = { name, labels in (prometheusName(name), labels.map { (prometheusLabel($0.0), $0.1) }) }
        MetricsSystem.bootstrap(factory)
    }()

    static func prometheusName(_ name: String) -> String {
        switch name {
        case "hb.requests": "tally_http_requests_total"
        case "hb.request.errors": "tally_http_request_errors_total"
        case "http.server.request.duration": "tally_http_request_duration_seconds"
        case "http.server.active_requests": "tally_http_active_requests"
        default: name.replacingOccurrences(of: ".", with: "_")
        }
    }

    static func prometheusLabel(_ label: String) -> String {
        switch label {
        case "http.route": "route"
        case "http.request.method": "method"
        case "http.response.status_code": "status"
        case "error.type": "status"
        default: label.replacingOccurrences(of: ".", with: "_")
        }
    }

    /// The metrics listener: `GET /metrics` (and nothing else) on an address of its own, away from the API
    /// port, so a deployment keeps it on loopback or a private network. Logs where it listens.
    static func listener(host: String, port: Int, logger: Logger) -> some ApplicationProtocol {
        let router = Router()
        router.get("metrics") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8", .cacheControl: "no-store"],
                body: .init(byteBuffer: ByteBuffer(bytes: registry.emitToBuffer())))
        }
        return Application(
            router: router,
            configuration: .init(address: .hostname(host, port: port), serverName: "tally-metrics"),
            onServerRunning: { channel in
                logger.notice("Metrics on http://\(host):\(channel.localAddress?.port ?? port)/metrics")
            },
            logger: logger)
    }
}
