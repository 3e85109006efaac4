// Command hull-init is PID 1 inside every hull VM. See package guestinit.
package main

import "github.com/hullvm/hull/internal/guestinit"

func main() { guestinit.Main() }
