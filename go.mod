module github.com/bones-swarm/slotgc

go 1.26
