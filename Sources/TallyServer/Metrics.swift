import Hummingbird
import Metrics
import Prometheus

/// Prometheus metrics at `GET /metrics`: requests by route, method and status
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

    static var endpoints: RouteCollection<TallyRequestContext> {
        let routes = RouteCollection(context: TallyRequestContext.self)
        routes.get("metrics") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8", .cacheControl: "no-store"],
                body: .init(byteBuffer: ByteBuffer(bytes: registry.emitToBuffer())))
        }
        return routes
    }
}
