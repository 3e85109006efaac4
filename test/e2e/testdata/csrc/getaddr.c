/* Resolves localhost and its own hostname through glibc's getaddrinfo. */
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
static int show(const char *name) {
	struct addrinfo hints, *res, *p;
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_INET;
	hints.ai_socktype = SOCK_STREAM;
	int rc = getaddrinfo(name, NULL, &hints, &res);
	if (rc != 0) {
		printf("%s: error %s\n", name, gai_strerror(rc));
		return 1;
	}
	for (p = res; p; p = p->ai_next) {
		char buf[64];
		inet_ntop(AF_INET, &((struct sockaddr_in *)p->ai_addr)->sin_addr, buf, sizeof buf);
		printf("%s: %s\n", name, buf);
		break;
	}
	freeaddrinfo(res);
	return 0;
}
int main(void) {
	char host[256];
	gethostname(host, sizeof host);
	return show("localhost") | show(host) | show("host.hull.internal");
}
