package agent

// SetRiskyHook makes a test's agent call f after marking a request as in
// progress and before its risky step (decoding and embedding an image).
func SetRiskyHook(a *Agent, f func(requestID string)) { a.riskyHook = f }
