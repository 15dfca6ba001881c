#!/usr/bin/perl
# p_perl - a real interpreter on the allocator: Perl takes every scalar,
# string, array and hash bucket from malloc (Debian builds it with the
# system malloc), so a text-processing script is one long malloc/realloc/free
# mix of sizes from a few bytes to kilobytes.
#
# Models a log or report processor: ITERS records, each a line of 3 to 40
# random words, are split, counted in a word-frequency hash, kept as small
# records (hash of arrays) in a bounded window of 2 000 records from which
# old ones are evicted at random, and every 2 500 records the window is
# summarized (sorted keys, joined strings), then the frequency hash is cut
# back to the words seen at least twice.
#
# Usage: p_perl.pl THREADS ITERS SEED (THREADS is ignored: one interpreter).
# Prints checksum=<16 hex digits>, built from the words, counts and lengths,
# never from addresses or hash order, so every allocator prints the same.
use strict;
use warnings;

my (undef, $iters, $seed) = @ARGV;
die "usage: p_perl.pl THREADS ITERS SEED\n" unless defined $seed;

# Perl's own drand48 (since 5.20): the same stream on every build
srand($seed);
sub rnd { int rand $_[0] }

my @syll = qw(ka to ri mu se no ha chi ru ve lo pa qui zen dor fa);
my @words = map { my $w = ''; $w .= $syll[rnd(16)] for 0 .. rnd(4); $w } 1 .. 4000;

my (%freq, %window, @ids);
my $sum = 0;
for my $i (1 .. $iters) {
	my $line = join ' ', map { $words[rnd(4000)] } 0 .. 2 + rnd(38);
	my @f = split / /, $line;
	$freq{$_}++ for @f;
	my $id = "r$i";
	$window{$id} = { words => \@f, text => $line, len => length $line };
	push @ids, $id;
	if (@ids > 2000) {
		my $k = rnd(scalar @ids);
		my $gone = delete $window{$ids[$k]};
		$sum += $gone->{len} + scalar @{ $gone->{words} };
		$ids[$k] = $ids[-1];
		pop @ids;
	}
	if ($i % 2500 == 0) {
		my @top = (sort { $freq{$b} <=> $freq{$a} || $a cmp $b } keys %freq)[0 .. 9];
		$sum += length join ',', @top;
		$sum += $freq{$_} for @top;
		delete @freq{ grep { $freq{$_} < 2 } keys %freq };
	}
}
$sum += $freq{$_} * length $_ for keys %freq;
$sum += $window{$_}{len} for @ids;
printf "checksum=%016x\n", $sum;
