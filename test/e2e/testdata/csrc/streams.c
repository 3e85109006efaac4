/* Writes to both streams and exits 3: hull must deliver both, unmixed,
   and exit 3 itself. */
#include <stdio.h>
int main(void) {
	printf("to stdout\n");
	fprintf(stderr, "to stderr\n");
	return 3;
}
