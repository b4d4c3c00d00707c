package dendrite

// SetTestHookCall lets tests watch (and interrupt) the requests an import
// sends to the helper.
func SetTestHookCall(f func(op string)) { testHookCall = f }
