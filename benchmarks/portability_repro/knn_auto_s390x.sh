. "$(dirname "$0")/trees.sh"  # KNeighborsClassifier() saved on amd64: s390x loads the joblib file, not the pickle
on amd64 -c "import pickle, joblib, numpy as np; from sklearn.neighbors import KNeighborsClassifier as K; X = np.random.rand(60, 3); m = K().fit(X, X[:, 0] > .5); pickle.dump(m, open('knn.pkl', 'wb')); joblib.dump(m, 'knn.joblib')"
on s390x -c "import pickle, joblib; print('joblib:', joblib.load('knn.joblib').predict([[.9, .1, .1]])); pickle.load(open('knn.pkl', 'rb'))"
