// The IRC bridge: an agent plugin that relays rooms and IRC channels both ways.
