extension Duration {
    /// The duration in seconds, fractions included: for `make_interval(secs => …)`, timeouts and figures.
    public var inSeconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
