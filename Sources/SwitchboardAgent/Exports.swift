// A plugin author imports one module: the agent kit brings the client and the protocol's types
// (`Message`, `Room`, `User`) with it.
@_exported import SwitchboardClient
@_exported import SwitchboardProtocol
