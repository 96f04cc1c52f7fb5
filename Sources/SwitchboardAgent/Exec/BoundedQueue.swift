import Synchronization

/// A first-in, first-out queue with a bound, for one consumer: a producer never waits (a push to a
/// full queue is refused), the consumer waits for the next element.
final class BoundedQueue<Element: Sendable>: Sendable {
    private struct State {
        var items: [Element] = []
        var waiter: CheckedContinuation<Element?, Never>?
    }

    /// The most elements held at once.
    let limit: Int
    private let state = Mutex(State())

    init(limit: Int) {
        self.limit = max(1, limit)
    }

    /// Adds `element`; `false` when the queue is full and it was not added.
    func push(_ element: Element) -> Bool {
        let outcome: (accepted: Bool, waiter: CheckedContinuation<Element?, Never>?) = state.withLock { state in
            if let waiter = state.waiter {
                state.waiter = nil
                return (true, waiter)
            }
            guard state.items.count < limit else { return (false, nil) }
            state.items.append(element)
            return (true, nil)
        }
        outcome.waiter?.resume(returning: element)
        return outcome.accepted
    }

    /// The next element, waiting for one; `nil` when the task is cancelled.
    func pop() async -> Element? {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Element?, Never>) in
                let immediate: Element?? = state.withLock { state in
                    if Task.isCancelled { return .some(nil) }
                    if !state.items.isEmpty { return .some(state.items.removeFirst()) }
                    precondition(state.waiter == nil, "BoundedQueue has one consumer")
                    state.waiter = continuation
                    return .none
                }
                if case .some(let element) = immediate { continuation.resume(returning: element) }
            }
        } onCancel: {
            state.withLock { state in
                defer { state.waiter = nil }
                return state.waiter
            }?.resume(returning: nil)
        }
    }
}
