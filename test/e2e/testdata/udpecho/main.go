// Command udpecho answers each datagram on :5353 with "echo: " + it.
package main

import (
	"log"
	"net"
)

func main() {
	c, err := net.ListenPacket("udp", ":5353")
	if err != nil {
		log.Fatal(err)
	}
	log.Print("listening on :5353/udp")
	buf := make([]byte, 2048)
	for {
		n, addr, err := c.ReadFrom(buf)
		if err != nil {
			log.Fatal(err)
		}
		c.WriteTo(append([]byte("echo: "), buf[:n]...), addr)
	}
}
