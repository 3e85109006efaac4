/* Holds a line in its stdio buffer until SIGTERM, then flushes it: a
   graceful stop must let it finish. With "ignore" it ignores SIGTERM, so
   only a forced stop ends it. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
static volatile sig_atomic_t stop;
static void on_term(int sig) { (void)sig; stop = 1; }
int main(int argc, char **argv) {
	int ignore = argc > 1 && strcmp(argv[1], "ignore") == 0;
	signal(SIGTERM, ignore ? SIG_IGN : on_term);
	fprintf(stderr, "ready\n");
	printf("flushed\n"); /* stdout is not a tty: this stays buffered */
	while (!stop)
		pause();
	fflush(stdout);
	return 0;
}
