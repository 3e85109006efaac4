// Command netserver is the benchmark's guest app: "/" answers a short
// body, "/blob?mb=N" streams N MiB, so requests/s and MB/s through a port
// forward can be measured.
package main

import (
	"fmt"
	"log"
	"net/http"
	"strconv"
)

func main() {
	chunk := make([]byte, 1<<20)
	for i := range chunk {
		chunk[i] = byte(i)
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok\n") })
	http.HandleFunc("/blob", func(w http.ResponseWriter, r *http.Request) {
		mb, _ := strconv.Atoi(r.URL.Query().Get("mb"))
		w.Header().Set("Content-Length", strconv.Itoa(mb<<20))
		for i := 0; i < mb; i++ {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	log.Print("listening on :8080")
	log.Fatal(http.ListenAndServe(":8080", nil))
}
