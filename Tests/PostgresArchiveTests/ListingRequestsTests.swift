import Testing
@testable import PostgresArchive

@Suite(.timeLimit(.minutes(1))) struct ListingRequestsTests {
    @Test func aNewArchiverListsFirst() {
        #expect(ListingRequests().isPending)
    }

    @Test func aListingAnswersTheRequestsMadeBeforeItBegan() {
        var requests = ListingRequests()
        requests.request()
        let ticket = requests.begin()
        requests.finish(ticket)
        #expect(!requests.isPending)
    }

    @Test func aRequestMadeDuringAListingIsStillPendingAfterIt() {
        var requests = ListingRequests()
        let ticket = requests.begin()
        requests.request()
        requests.finish(ticket)
        #expect(requests.isPending)
        requests.finish(requests.begin())
        #expect(!requests.isPending)
    }

    @Test func aFailedListingAnswersNothing() {
        let requests = ListingRequests()
        _ = requests.begin()
        #expect(requests.isPending)
    }
}
